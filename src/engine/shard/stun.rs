//! Just enough STUN (RFC 8489) to route a binding request to its peer: the local ICE ufrag in
//! its USERNAME attribute. str0m validates the message itself (integrity, fingerprint).

/// The local ufrag of a STUN binding request (the part of USERNAME before `:`), if `data` is
/// one.
pub fn local_ufrag(data: &[u8]) -> Option<&[u8]> {
    if data.len() < 20 || data[0] & 0xC0 != 0 || data[4..8] != [0x21, 0x12, 0xA4, 0x42] {
        return None;
    }
    let len = u16::from_be_bytes([data[2], data[3]]) as usize;
    let body = data.get(20..20 + len)?;
    let mut i = 0;
    while i + 4 <= body.len() {
        let ty = u16::from_be_bytes([body[i], body[i + 1]]);
        let alen = u16::from_be_bytes([body[i + 2], body[i + 3]]) as usize;
        let value = body.get(i + 4..i + 4 + alen)?;
        if ty == 0x0006 {
            let end = value.iter().position(|&b| b == b':').unwrap_or(value.len());
            return Some(&value[..end]);
        }
        i += 4 + alen.div_ceil(4) * 4;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_ufrag_of_a_binding_request() {
        let user = b"abcd:wxyz";
        let mut m = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42];
        m.extend_from_slice(&[7; 12]);
        // A SOFTWARE attribute first (padded), then USERNAME.
        let mut attrs = vec![0x80, 0x22, 0x00, 0x03, b'a', b'b', b'c', 0];
        attrs.extend_from_slice(&[0x00, 0x06, 0x00, user.len() as u8]);
        attrs.extend_from_slice(user);
        attrs.extend_from_slice(&[0, 0, 0]);
        m[2..4].copy_from_slice(&(attrs.len() as u16).to_be_bytes());
        m.extend_from_slice(&attrs);
        assert_eq!(local_ufrag(&m), Some(&b"abcd"[..]));
        // Truncated, RTP-looking and garbage inputs are not STUN.
        assert_eq!(local_ufrag(&m[..m.len() - 5]), None);
        assert_eq!(local_ufrag(&[0x80; 40]), None);
        assert_eq!(local_ufrag(b"hello"), None);
    }
}
