//! The Corezoid API sandbox (to be built: see issue 2).
