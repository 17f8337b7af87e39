//! Time charts as inline SVG, written by hand: stacked step areas, lines, horizontal
//! reference lines and a band of marks, over a time axis. In: a `Chart` (one value per
//! time slot per series). Out: an `<svg>` element. Text uses the generic `sans-serif`
//! family, so nothing depends on a font being installed.

use std::fmt::Write;

const W: f64 = 960.0;
const H: f64 = 300.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 34.0;
/// The band of marks sits just above the plot.
const BAND: f64 = 7.0;

/// One series: a value per time slot (`None`: no data in that slot).
pub struct Series {
    pub name: String,
    pub color: &'static str,
    pub values: Vec<Option<f64>>,
    pub dashed: bool,
}

impl Series {
    pub fn new(name: &str, color: &'static str, values: Vec<Option<f64>>) -> Series {
        Series {
            name: name.to_string(),
            color,
            values,
            dashed: false,
        }
    }
}

/// A chart over time: `areas` stack from the bottom, `lines` are drawn over them.
pub struct Chart {
    pub id: &'static str,
    pub y_label: &'static str,
    /// Seconds per slot.
    pub slot_secs: f64,
    pub areas: Vec<Series>,
    pub lines: Vec<Series>,
    /// Horizontal reference lines: label, value, colour.
    pub hlines: Vec<(String, f64, &'static str)>,
    /// Slots marked in a band above the plot, darker with a larger value.
    pub marks: Option<Series>,
}

impl Chart {
    pub fn render(&self) -> String {
        let n = self
            .areas
            .iter()
            .chain(&self.lines)
            .map(|s| s.values.len())
            .max()
            .unwrap_or(0)
            .max(1);
        let top = self.y_top(n);
        let frame = Frame {
            n,
            top,
            pw: W - LEFT - RIGHT,
            ph: H - TOP - BOTTOM,
        };
        let mut s = String::new();
        let _ = write!(
            s,
            r#"<svg id="{}" class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" height="{H}" font-family="sans-serif" font-size="12">"#,
            self.id
        );
        self.axes(&mut s, &frame);
        let mut base = vec![0.0; n];
        for a in &self.areas {
            area(&mut s, &frame, a, &mut base);
        }
        for l in &self.lines {
            line(&mut s, &frame, l);
        }
        for (label, v, color) in &self.hlines {
            let y = frame.y(*v);
            let _ = write!(
                s,
                r#"<line class="ref" x1="{LEFT}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" stroke="{color}" stroke-dasharray="6 4" stroke-width="1.5"/><text x="{:.1}" y="{:.1}" text-anchor="end" fill="{color}">{}</text>"#,
                W - RIGHT,
                W - RIGHT - 4.0,
                y - 4.0,
                esc(label)
            );
        }
        if let Some(m) = &self.marks {
            band(&mut s, &frame, m);
        }
        self.legend(&mut s);
        s.push_str("</svg>");
        s
    }

    /// The top of the y axis: a round number above every stacked total, line and
    /// reference line.
    fn y_top(&self, n: usize) -> f64 {
        let mut max: f64 = 0.0;
        for i in 0..n {
            let stacked: f64 = self
                .areas
                .iter()
                .filter_map(|a| a.values.get(i).copied().flatten())
                .sum();
            max = max.max(stacked);
        }
        for l in &self.lines {
            max = l.values.iter().flatten().fold(max, |m, &v| m.max(v));
        }
        for (_, v, _) in &self.hlines {
            max = max.max(*v);
        }
        let step = nice_step(max.max(1.0) / 4.0);
        ((max / step).ceil() * step).max(step)
    }

    fn axes(&self, s: &mut String, f: &Frame) {
        let (x0, x1, y0) = (LEFT, W - RIGHT, TOP + f.ph);
        let step = nice_step(f.top / 4.0);
        let mut v = 0.0;
        while v <= f.top * 1.0001 {
            let y = f.y(v);
            let _ = write!(
                s,
                r##"<line x1="{x0}" x2="{x1}" y1="{y:.1}" y2="{y:.1}" stroke="#e3e3e3"/><text x="{:.1}" y="{:.1}" text-anchor="end" fill="#555">{}</text>"##,
                x0 - 6.0,
                y + 4.0,
                num(v)
            );
            v += step;
        }
        let total = f.n as f64 * self.slot_secs;
        let tstep = time_step(total / 8.0);
        let mut t = 0.0;
        while t <= total * 1.0001 {
            let x = LEFT + t / total * f.pw;
            let _ = write!(
                s,
                r##"<line x1="{x:.1}" x2="{x:.1}" y1="{y0}" y2="{:.1}" stroke="#999"/><text x="{x:.1}" y="{:.1}" text-anchor="middle" fill="#555">{}</text>"##,
                y0 + 5.0,
                y0 + 18.0,
                dur(t)
            );
            t += tstep;
        }
        let _ = write!(
            s,
            r##"<line x1="{x0}" x2="{x1}" y1="{y0}" y2="{y0}" stroke="#333"/><line x1="{x0}" x2="{x0}" y1="{TOP}" y2="{y0}" stroke="#333"/><text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#333">time since the start</text><text transform="translate(14 {:.1}) rotate(-90)" text-anchor="middle" fill="#333">{}</text>"##,
            LEFT + f.pw / 2.0,
            H - 3.0,
            TOP + f.ph / 2.0,
            esc(self.y_label)
        );
    }

    fn legend(&self, s: &mut String) {
        let mut x = LEFT;
        let entries = self.areas.iter().chain(&self.lines).chain(&self.marks);
        for e in entries {
            let _ = write!(
                s,
                r##"<rect x="{x:.1}" y="8" width="12" height="12" fill="{}"/><text x="{:.1}" y="18" fill="#333">{}</text>"##,
                e.color,
                x + 16.0,
                esc(&e.name)
            );
            // No font metrics: an average glyph width is close enough for spacing.
            x += 16.0 + e.name.chars().count() as f64 * 6.8 + 18.0;
        }
    }
}

/// The plot's geometry.
struct Frame {
    n: usize,
    top: f64,
    pw: f64,
    ph: f64,
}

impl Frame {
    fn x(&self, i: usize) -> f64 {
        LEFT + i as f64 / self.n as f64 * self.pw
    }

    fn y(&self, v: f64) -> f64 {
        TOP + self.ph - (v / self.top).clamp(0.0, 1.0) * self.ph
    }
}

/// A step area from `base` up by the series' values; `base` then holds the new top.
fn area(s: &mut String, f: &Frame, a: &Series, base: &mut [f64]) {
    let mut d = String::new();
    let tops: Vec<f64> = (0..f.n)
        .map(|i| base[i] + a.values.get(i).copied().flatten().unwrap_or(0.0))
        .collect();
    let _ = write!(d, "M{:.1} {:.1}", f.x(0), f.y(base[0]));
    for (i, &t) in tops.iter().enumerate() {
        let _ = write!(
            d,
            "L{:.1} {:.1}L{:.1} {:.1}",
            f.x(i),
            f.y(t),
            f.x(i + 1),
            f.y(t)
        );
    }
    for i in (0..f.n).rev() {
        let _ = write!(
            d,
            "L{:.1} {:.1}L{:.1} {:.1}",
            f.x(i + 1),
            f.y(base[i]),
            f.x(i),
            f.y(base[i])
        );
    }
    let _ = write!(
        s,
        r#"<path class="area" d="{d}Z" fill="{}" fill-opacity="0.85"><title>{}</title></path>"#,
        a.color,
        esc(&a.name)
    );
    base.copy_from_slice(&tops);
}

/// A line through the middle of each slot; a slot without data breaks it.
fn line(s: &mut String, f: &Frame, l: &Series) {
    let mut d = String::new();
    let mut pen_down = false;
    for i in 0..f.n {
        match l.values.get(i).copied().flatten() {
            Some(v) => {
                let c = if pen_down { 'L' } else { 'M' };
                let _ = write!(d, "{c}{:.1} {:.1}", (f.x(i) + f.x(i + 1)) / 2.0, f.y(v));
                pen_down = true;
            }
            None => pen_down = false,
        }
    }
    let dash = if l.dashed {
        r#" stroke-dasharray="4 3""#
    } else {
        ""
    };
    let _ = write!(
        s,
        r#"<path class="line" d="{d}" fill="none" stroke="{}" stroke-width="1.8"{dash}><title>{}</title></path>"#,
        l.color,
        esc(&l.name)
    );
}

/// Marks above the plot for the slots with a value, more opaque for larger ones.
fn band(s: &mut String, f: &Frame, m: &Series) {
    let max = m.values.iter().flatten().fold(0.0f64, |a, &b| a.max(b));
    if max <= 0.0 {
        return;
    }
    for i in 0..f.n {
        let Some(v) = m.values.get(i).copied().flatten().filter(|&v| v > 0.0) else {
            continue;
        };
        let _ = write!(
            s,
            r#"<rect class="mark" x="{:.1}" y="{:.1}" width="{:.1}" height="{BAND}" fill="{}" fill-opacity="{:.2}"/>"#,
            f.x(i),
            TOP - BAND - 2.0,
            (f.x(i + 1) - f.x(i)).max(1.0),
            m.color,
            0.3 + 0.7 * v / max
        );
    }
}

/// A round step (1, 2 or 5 times a power of ten) at least `raw`.
fn nice_step(raw: f64) -> f64 {
    let p = 10f64.powf(raw.max(1e-9).log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|&s| s >= raw)
        .unwrap_or(10.0 * p)
}

/// A round time step (seconds) at least `raw`.
fn time_step(raw: f64) -> f64 {
    const STEPS: [f64; 16] = [
        1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0,
        21600.0, 43200.0,
    ];
    STEPS
        .iter()
        .copied()
        .find(|&s| s >= raw)
        .unwrap_or_else(|| (raw / 86400.0).ceil() * 86400.0)
}

/// `75` -> `1:15`, `3700` -> `1:01:40`.
pub fn dur(secs: f64) -> String {
    let t = secs.round() as u64;
    match t {
        0..60 => format!("{t}s"),
        60..3600 => format!("{}:{:02}", t / 60, t % 60),
        _ => format!("{}:{:02}:{:02}", t / 3600, t / 60 % 60, t % 60),
    }
}

/// An axis number: `1500` -> `1.5k`.
fn num(v: f64) -> String {
    if v >= 1e6 {
        format!("{}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{}k", v / 1e3)
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// Escapes text for XML (and HTML).
pub fn esc(t: &str) -> String {
    let mut o = String::with_capacity(t.len());
    for c in t.chars() {
        match c {
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '&' => o.push_str("&amp;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            // Control characters are not allowed in XML text.
            c if c.is_control() && c != '\n' && c != '\t' => o.push('\u{fffd}'),
            c => o.push(c),
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_durations_and_escapes() {
        assert_eq!(nice_step(0.3), 0.5);
        assert_eq!(nice_step(130.0), 200.0);
        assert_eq!(time_step(40.0), 60.0);
        assert_eq!(dur(75.0), "1:15");
        assert_eq!(dur(3700.0), "1:01:40");
        assert_eq!(num(1500.0), "1.5k");
        assert_eq!(
            esc("<a href=\"x\">&\u{1}"),
            "&lt;a href=&quot;x&quot;&gt;&amp;\u{fffd}"
        );
    }

    #[test]
    fn a_chart_has_its_areas_lines_references_and_marks() {
        let c = Chart {
            id: "c",
            y_label: "rows/s",
            slot_secs: 1.0,
            areas: vec![Series::new("ok", "#2a2", vec![Some(10.0), Some(20.0)])],
            lines: vec![Series::new("p50", "#22a", vec![Some(3.0), None])],
            hlines: vec![("limit 25".into(), 25.0, "#a22")],
            marks: Some(Series::new("throttled", "#a2a", vec![None, Some(1.0)])),
        }
        .render();
        assert!(c.starts_with("<svg id=\"c\"") && c.ends_with("</svg>"));
        for what in [
            "class=\"area\"",
            "class=\"line\"",
            "class=\"ref\"",
            "class=\"mark\"",
        ] {
            assert_eq!(c.matches(what).count(), 1, "{what} in {c}");
        }
        // The y axis goes past the reference line.
        assert!(c.contains(">30<"), "{c}");
    }
}
