//! The verdicts of `sniff::check` on small samples of each byte pattern.

use super::*;

fn claim(format: Format) -> Claim {
    Claim {
        format,
        format_flag: false,
        encoding: None,
        encoding_flag: false,
        delimiter: b',',
        delimiter_flag: false,
        has_header: true,
    }
}

fn csv() -> Claim {
    claim(Format::CSV)
}

fn flags(head: &[u8], c: &Claim) -> Vec<String> {
    check(head, false, c).expect_err("refused").flags
}

fn utf16le(text: &str) -> Vec<u8> {
    text.encode_utf16().flat_map(|u| u.to_le_bytes()).collect()
}

fn cp1251(text: &str) -> Vec<u8> {
    encoding_rs::WINDOWS_1251.encode(text).0.into_owned()
}

#[test]
fn plain_files_pass() {
    for head in [
        &b"id,name\n1,Ann\n2,\"B; c\"\n"[..],
        b"name\nAnn\nBob\n",
        b"\xEF\xBB\xBFid,name\r\n1,Zo\xC3\xAB\r\n",
        b"id,name\n",
        b"a,b\n1,2,3\n",
    ] {
        assert_eq!(check(head, false, &csv()), Ok(()), "{head:?}");
    }
    let nd = claim(Format::NDJSON);
    assert_eq!(check(b"{\"a\":1}\nnot json\n", false, &nd), Ok(()));
}

#[test]
fn semicolons_are_refused_naming_the_delimiter() {
    assert_eq!(
        flags(b"id;name;sum\n1;Ann;12.5\n", &csv()),
        ["--delimiter ';'"]
    );
    // A quoted `;` inside a cell, and decimal commas that make `,` split unevenly.
    let head = b"id;name;sum\n1;\"Ann; B\";12,50\n2;Bob;3\n";
    assert_eq!(flags(head, &csv()), ["--delimiter ';'"]);
    // An explicit delimiter the bytes deny is refused too, and the message says so.
    let given = Claim {
        delimiter_flag: true,
        ..csv()
    };
    let r = check(head, false, &given).unwrap_err();
    assert!(
        r.to_string().contains("--delimiter ',' says otherwise"),
        "{r}"
    );
    assert_eq!(flags(b"a\tb\n1\t2\n", &csv()), ["--delimiter '\\t'"]);
    assert_eq!(flags(b"a|b|c\n1|2|3\n", &csv()), ["--delimiter '|'"]);
    let semi = Claim {
        delimiter: b';',
        ..csv()
    };
    assert_eq!(flags(b"a,b\n1,2\n", &semi), ["--delimiter ','"]);
    // A ragged row does not hide the delimiter, nor make a ragged comma file a `;` one.
    let ragged = b"id;name;sum\n1;a;1\n2;b\n3;c;3\n4;d;4\n5;e;5\n";
    assert_eq!(flags(ragged, &csv()), ["--delimiter ';'"]);
    let commas = b"id,name,sum\n1,a;x,1\n2,b\n3,c,3\n4,d,4\n5,e,5\n";
    assert_eq!(check(commas, false, &csv()), Ok(()));
    // A header alone is enough to tell.
    assert_eq!(flags(b"id;name;sum\n", &csv()), ["--delimiter ';'"]);
}

#[test]
fn utf16_without_a_bom_is_refused_naming_its_byte_order() {
    let le = utf16le("id,name\n1,Ірина\n");
    assert_eq!(flags(&le, &csv()), ["--encoding utf-16le"]);
    let be: Vec<u8> = "id,name\n1,x\n"
        .encode_utf16()
        .flat_map(|u| u.to_be_bytes())
        .collect();
    assert_eq!(flags(&be, &csv()), ["--encoding utf-16be"]);
    let right = Claim {
        encoding: Some(UTF_16LE),
        encoding_flag: true,
        ..csv()
    };
    assert_eq!(check(&le, false, &right), Ok(()));
    // With its byte order mark it is read without a flag.
    let mut bom = vec![0xFF, 0xFE];
    bom.extend(&le);
    assert_eq!(check(&bom, false, &csv()), Ok(()));
    // A stray NUL in a cell is the cell's.
    let stray = format!("id,name\n1,a\0b\n{}", "2,some longer text\n".repeat(4));
    assert_eq!(check(stray.as_bytes(), false, &csv()), Ok(()));
    // Compressed without saying so.
    assert_eq!(
        flags(b"\x1f\x8b\x08\x00\xaa\xbb", &csv()),
        ["--compression gzip"]
    );
    // NULs on both sides: not text.
    let r = check(b"\x00\x00\x00\x00ab", false, &csv()).unwrap_err();
    assert!(r.to_string().contains("--compression"), "{r}");
}

#[test]
fn an_encoding_the_bytes_deny_is_refused() {
    let utf16 = Claim {
        encoding: Some(UTF_16LE),
        encoding_flag: true,
        ..csv()
    };
    let r = check(b"id,name\n1,Ann\n2,Bob\n", false, &utf16).unwrap_err();
    assert_eq!(r.flags, ["--encoding utf-8"]);
    assert!(
        r.to_string().contains("--encoding utf-16le says otherwise"),
        "{r}"
    );
    let cp = Claim {
        encoding: Some(encoding_rs::WINDOWS_1251),
        encoding_flag: true,
        ..csv()
    };
    assert_eq!(
        flags("id,name\n1,Ірина\n".as_bytes(), &cp),
        ["--encoding utf-8"]
    );
    // ASCII reads the same in either: no contradiction.
    assert_eq!(check(b"id,name\n1,Ann\n", false, &cp), Ok(()));
    assert_eq!(check(&cp1251("id,name\n1,Ірина\n"), false, &cp), Ok(()));
}

#[test]
fn excel_in_a_cyrillic_locale_names_both_flags() {
    let head = cp1251("Код;Имя;Сумма\r\n1;Ирина Шевченко;12,50\r\n2;Пётр Иванов;3,00\r\n");
    assert_eq!(
        flags(&head, &csv()),
        ["--encoding windows-1251", "--delimiter ';'"]
    );
    // A UTF-8 file with one damaged row is UTF-8: its bad row is rejected alone.
    let damaged = b"id,name\n1,Zo\xC3\xAB\n2,bad \xFF\n";
    assert_eq!(check(damaged, false, &csv()), Ok(()));
    // ASCII with a stray byte is not known for UTF-8: refused, unless the user says so.
    let stray = b"id,name\n1,ok\n2,bad \xFF\xFE here\n";
    assert!(check(stray, false, &csv()).is_err());
    let said = Claim {
        encoding_flag: true,
        ..csv()
    };
    assert_eq!(check(stray, false, &said), Ok(()));
}

#[test]
fn formats_the_bytes_deny() {
    let nd = claim(Format::NDJSON);
    assert_eq!(flags(b"id,name\n1,Ann\n", &nd), ["--format csv"]);
    assert_eq!(flags(b"[{\"a\":1}]\n", &nd), ["--format json-array"]);
    assert_eq!(
        flags(b"{\"a\":1}\n{\"a\":2}\n", &csv()),
        ["--format ndjson"]
    );
    let arr = claim(Format::JSON_ARRAY);
    assert_eq!(flags(b"{\"a\":1}\n", &arr), ["--format ndjson"]);
    assert_eq!(
        flags(b"id;name\n1;Ann\n", &arr),
        ["--format csv", "--delimiter ';'"]
    );
    assert_eq!(check(b" [{\"a\":1}]", false, &arr), Ok(()));
    assert_eq!(
        flags(b"[\n {\"a\":1,\"b\":2},\n {\"a\":3,\"b\":4}]\n", &csv()),
        ["--format json-array"]
    );
}

#[test]
fn many_lines_read_as_a_header_alone_are_refused() {
    let r = check(b"id,\"name\n1,Ann\n2,Bob\n", false, &csv()).unwrap_err();
    assert!(r.to_string().contains("quote"), "{r}");
    // Cut short by the sample, a record may look like that: not refused.
    assert_eq!(check(b"id,\"name\n1,Ann\n2,Bob\n", true, &csv()), Ok(()));
}

#[test]
fn a_sample_cut_mid_character_or_mid_line_is_judged_on_what_is_whole() {
    let mut head = "id;name\n1;Ірина\n2;Ї".as_bytes().to_vec();
    head.pop();
    assert_eq!(flags_cut(&head), ["--delimiter ';'"]);
    assert_eq!(shown(b'\''), "\"'\"");
}

fn flags_cut(head: &[u8]) -> Vec<String> {
    check(head, true, &csv()).expect_err("refused").flags
}

#[test]
fn any_bytes_under_any_claim_give_a_verdict_and_a_refusal_gives_a_reason() {
    // A fixed pseudo-random stream over the bytes that steer the checks (see
    // fuzz/fuzz_targets/sniff.rs for the open-ended search).
    let alphabet = b"\x00\x01\n\r\t,;|\"{}[]ab \xC3\xA9\xD0\xFF\xFE\xEF\xBB\xBF\x1f\x8b";
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..1000 {
        let len = (next() % 200) as usize;
        let head: Vec<u8> = (0..len)
            .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
            .collect();
        let sel = next();
        let c = Claim {
            format: [Format::CSV, Format::NDJSON, Format::JSON_ARRAY][(sel % 3) as usize],
            format_flag: sel & 8 != 0,
            encoding: [
                None,
                Some(UTF_16LE),
                Some(UTF_16BE),
                Some(encoding_rs::WINDOWS_1251),
            ][((sel >> 4) & 3) as usize],
            encoding_flag: sel & 64 != 0,
            delimiter: CANDIDATES[((sel >> 7) & 3) as usize],
            delimiter_flag: sel & 512 != 0,
            has_header: sel & 1024 == 0,
        };
        if let Err(r) = check(&head, sel & 2048 != 0, &c) {
            assert!(!r.why.is_empty(), "{head:?} {c:?}: {r:?}");
        }
    }
}
