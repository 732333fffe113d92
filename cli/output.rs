//! How results are printed: aligned tables for people, one JSON document for scripts. Data goes
//! to stdout; logs and errors go to stderr.

use serde_json::{Value, json};

/// Keys and values in JSON: a string when valid UTF-8, else `{"hex": "..."}`.
pub fn bytes_json(b: &[u8]) -> Value {
    match std::str::from_utf8(b) {
        Ok(s) => Value::String(s.to_string()),
        Err(_) => json!({ "hex": hex(b) }),
    }
}

/// Keys and values in a table: the text when printable UTF-8, else `0x` and hex.
pub fn bytes_text(b: &[u8]) -> String {
    match std::str::from_utf8(b) {
        Ok(s) if !s.chars().any(char::is_control) => s.to_string(),
        _ => format!("0x{}", hex(b)),
    }
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn print_json(value: &Value) {
    // A value built by this program always serializes.
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    );
}

/// A table with a header row, columns padded to their widest cell.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let n = self.header.len();
        let mut width: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(n) {
                width[i] = width[i].max(cell.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let mut out = String::new();
            for (i, cell) in cells.iter().enumerate().take(n) {
                if i + 1 == n {
                    out.push_str(cell);
                } else {
                    out.push_str(&format!("{cell:<w$}  ", w = width[i]));
                }
            }
            out.trim_end().to_string()
        };
        let mut out = line(&self.header);
        out.push('\n');
        for row in &self.rows {
            out.push_str(&line(row));
            out.push('\n');
        }
        out
    }

    pub fn print(&self) {
        print!("{}", self.render());
    }
}

/// A byte count for people: `512B`, `1.5KiB`, `96.0MiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n}B")
    } else {
        format!("{value:.1}{}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_show_as_text_or_hex() {
        assert_eq!(bytes_json(b"abc"), json!("abc"));
        assert_eq!(bytes_json(&[0xff, 0x00]), json!({"hex": "ff00"}));
        assert_eq!(bytes_text(b"abc"), "abc");
        assert_eq!(bytes_text(b"a\nb"), "0x610a62");
    }

    #[test]
    fn tables_align() {
        let mut t = Table::new(&["ID", "ADDRESS", "STATE"]);
        t.row(vec!["1".into(), "127.0.0.1:20160".into(), "up".into()]);
        t.row(vec!["10".into(), "h:1".into(), "down".into()]);
        assert_eq!(
            t.render(),
            "ID  ADDRESS          STATE\n1   127.0.0.1:20160  up\n10  h:1              down\n"
        );
    }
}
