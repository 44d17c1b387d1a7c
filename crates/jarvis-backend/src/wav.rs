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
    // Compared in u64: a file of 4 GiB or more matches no u32 size (no wrap-around).
    if u32_at(4).map(u64::from) != Some(bytes.len() as u64 - 8) {
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
/// A WAV of 4 GiB or more cannot say its size (RIFF sizes are u32): that is an error,
/// not a size silently cut to its low 32 bits.
pub fn fix_streamed_sizes(bytes: &mut [u8]) -> Result<(), String> {
    if bytes.len() >= 44 && &bytes[0..4] == b"RIFF" && &bytes[36..40] == b"data" {
        let (riff, data) = streamed_sizes(bytes.len())?;
        bytes[4..8].copy_from_slice(&riff.to_le_bytes());
        bytes[40..44].copy_from_slice(&data.to_le_bytes());
    }
    Ok(())
}

/// The RIFF and data chunk sizes of a canonical 44-byte-header WAV of `len` bytes.
fn streamed_sizes(len: usize) -> Result<(u32, u32), String> {
    let too_big = |_| format!("a WAV of {len} bytes is too big for RIFF's 32-bit sizes (4 GiB at most)");
    let riff = u32::try_from(len - 8).map_err(too_big)?;
    let data = u32::try_from(len - 44).map_err(too_big)?;
    Ok((riff, data))
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
        fix_streamed_sizes(&mut wav).unwrap();
        let info = parse(&wav).unwrap();
        assert_eq!(info, WavInfo { channels: 1, sample_rate: 22050, bits_per_sample: 16, data_len: 100 });
    }

    #[test]
    fn sizes_past_four_gib_are_an_error_not_truncated() {
        // The largest that fits: the RIFF size is exactly u32::MAX.
        let max = u32::MAX as usize + 8;
        assert_eq!(streamed_sizes(max), Ok((u32::MAX, u32::MAX - 36)));
        // One byte more used to wrap to a RIFF size of 0.
        let err = streamed_sizes(max + 1).unwrap_err();
        assert!(err.contains("too big"), "{err}");
        assert!(streamed_sizes(6 << 30).is_err());
    }

    #[test]
    fn garbage_is_rejected() {
        assert!(parse(b"hello").is_err());
        assert!(parse(&header(36, 0)[..40]).is_err());
    }
}
