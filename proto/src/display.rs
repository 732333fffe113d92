//! Keys as people read them in errors, logs and command descriptions.

/// A key as text when it is short printable UTF-8, else hex.
pub fn printable(key: &[u8]) -> String {
    match std::str::from_utf8(key) {
        Ok(s) if s.len() <= 64 && !s.chars().any(char::is_control) => format!("{s:?}"),
        _ => {
            let hex: String = key.iter().take(32).map(|b| format!("{b:02x}")).collect();
            if key.len() > 32 {
                format!("0x{hex}…")
            } else {
                format!("0x{hex}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_print_as_text_or_hex() {
        assert_eq!(printable(b"user1"), "\"user1\"");
        assert_eq!(printable(b"\x00\xff"), "0x00ff");
        assert!(printable(&[0xab; 40]).ends_with('…'));
    }
}
