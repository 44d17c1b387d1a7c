//! Just enough RIFF/WAVE to fix a streamed header and to check one in tests.

/// A WAV's format, as read from its `fmt ` chunk.
#[derive(Debug, PartialEq)]
pub struct WavInfo {
    pub channels: u16,
    pub sample_rate: u32,
    pub bits_per_sample: u16,
    /// Bytes of sample data in the `data` chunk.
    pub data_len: usize,
}

/// Checks a PCM WAV from its header down to its data: the RIFF size matches the file, the
/// `fmt ` chunk is PCM, and the `data` chunk's size matches the bytes that follow.
pub fn parse(bytes: &[u8]) -> Result<WavInfo, String> {
    let u32_at = |i: usize| bytes.get(i..i + 4).map(|b| u32::from_le_bytes(b.try_into().unwrap()));
    let u16_at = |i: usize| bytes.get(i..i + 2).map(|b| u16::from_le_bytes(b.try_into().unwrap()));
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err("not a RIFF/WAVE file".into());
    }
    if u32_at(4) != Some((bytes.len() - 8) as u32) {
        return Err(format!("RIFF size {:?} does not match file length {}", u32_at(4), bytes.len()));
    }
    let (mut pos, mut format) = (12, None);
    while pos + 8 <= bytes.len() {
        let id = &bytes[pos..pos + 4];
        let size = u32_at(pos + 4).unwrap() as usize;
        let body = pos + 8;
        match id {
            b"fmt " => {
                if u16_at(body) != Some(1) {
                    return Err(format!("not PCM (format tag {:?})", u16_at(body)));
                }
                format = Some((
                    u16_at(body + 2).unwrap_or(0),
                    u32_at(body + 4).unwrap_or(0),
                    u16_at(body + 14).unwrap_or(0),
                ));
            }
            b"data" => {
                let (channels, sample_rate, bits_per_sample) = format.ok_or("data chunk before fmt chunk")?;
                if body + size > bytes.len() {
                    return Err(format!("data chunk claims {size} bytes, file has {}", bytes.len() - body));
                }
                return Ok(WavInfo { channels, sample_rate, bits_per_sample, data_len: size });
            }
            _ => {}
        }
        pos = body + size + (size & 1);
    }
    Err("no data chunk".into())
}

/// A WAV written to a pipe cannot seek back to fill in its sizes, so espeak-ng leaves
/// placeholders. For the canonical 44-byte header, write the real RIFF and data sizes.
pub fn fix_streamed_sizes(bytes: &mut [u8]) {
    if bytes.len() >= 44 && &bytes[0..4] == b"RIFF" && &bytes[36..40] == b"data" {
        let riff = (bytes.len() - 8) as u32;
        let data = (bytes.len() - 44) as u32;
        bytes[4..8].copy_from_slice(&riff.to_le_bytes());
        bytes[40..44].copy_from_slice(&data.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(riff: u32, data: u32) -> Vec<u8> {
        let mut h = Vec::new();
        h.extend_from_slice(b"RIFF");
        h.extend_from_slice(&riff.to_le_bytes());
        h.extend_from_slice(b"WAVEfmt ");
        h.extend_from_slice(&16u32.to_le_bytes());
        h.extend_from_slice(&[1, 0, 1, 0]); // PCM, mono
        h.extend_from_slice(&22050u32.to_le_bytes());
        h.extend_from_slice(&44100u32.to_le_bytes());
        h.extend_from_slice(&[2, 0, 16, 0]);
        h.extend_from_slice(b"data");
        h.extend_from_slice(&data.to_le_bytes());
        h
    }

    #[test]
    fn streamed_header_is_fixed_and_then_valid() {
        let mut wav = header(0x7fff_f024, 0x7fff_f000);
        wav.extend_from_slice(&[0u8; 100]);
        assert!(parse(&wav).is_err());
        fix_streamed_sizes(&mut wav);
        let info = parse(&wav).unwrap();
        assert_eq!(info, WavInfo { channels: 1, sample_rate: 22050, bits_per_sample: 16, data_len: 100 });
    }

    #[test]
    fn garbage_is_rejected() {
        assert!(parse(b"hello").is_err());
        assert!(parse(&header(36, 0)[..40]).is_err());
    }
}
