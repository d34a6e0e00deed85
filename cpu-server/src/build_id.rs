//! The running executable's build id: the GNU build-id note the linker writes
//! into the ELF file (a hash of its contents), so two builds of the same version
//! are told apart on `/health` and in the start-up log. Read once, at start-up,
//! from `/proc/self/exe` (the image running, even if the file was replaced since).

use std::io::{Read, Seek, SeekFrom};
use std::sync::OnceLock;

/// `PT_NOTE`.
const PT_NOTE: u32 = 4;
/// `NT_GNU_BUILD_ID`.
const NT_GNU_BUILD_ID: u32 = 3;
/// Program headers read at most (a real executable has about a dozen).
const MAX_PHDRS: usize = 128;
/// A note segment larger than this is not read.
const MAX_NOTE_BYTES: u64 = 64 * 1024;

static BUILD_ID: OnceLock<String> = OnceLock::new();

/// Reads this executable's build id; call once before serving. Later calls keep the first.
pub fn init() -> &'static str {
    BUILD_ID.get_or_init(|| read_own().unwrap_or_else(|| "unknown".to_owned()))
}

/// The build id read by [`init`] (`"unknown"` if it was not called or found none).
pub fn current() -> &'static str {
    BUILD_ID.get().map_or("unknown", String::as_str)
}

fn read_own() -> Option<String> {
    let mut file = std::fs::File::open("/proc/self/exe").ok()?;
    from_elf(&mut file)
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// The GNU build id (hex) of a 64-bit little-endian ELF file, reading only its
/// headers and note segments.
pub fn from_elf(file: &mut (impl Read + Seek)) -> Option<String> {
    let mut header = [0u8; 64];
    file.read_exact(&mut header).ok()?;
    if header[..4] != *b"\x7fELF" || header[4] != 2 || header[5] != 1 {
        return None;
    }
    let phoff = u64_at(&header, 0x20)?;
    let phentsize = usize::from(u16_at(&header, 0x36)?);
    let phnum = usize::from(u16_at(&header, 0x38)?).min(MAX_PHDRS);
    if phentsize < 56 {
        return None;
    }
    let mut phdrs = vec![0u8; phentsize * phnum];
    file.seek(SeekFrom::Start(phoff)).ok()?;
    file.read_exact(&mut phdrs).ok()?;
    for ph in phdrs.chunks_exact(phentsize) {
        if u32_at(ph, 0)? != PT_NOTE {
            continue;
        }
        let (offset, size) = (u64_at(ph, 8)?, u64_at(ph, 32)?);
        if size > MAX_NOTE_BYTES {
            continue;
        }
        let mut notes = vec![0u8; usize::try_from(size).ok()?];
        file.seek(SeekFrom::Start(offset)).ok()?;
        file.read_exact(&mut notes).ok()?;
        if let Some(id) = gnu_build_id(&notes) {
            return Some(id);
        }
    }
    None
}

/// The `NT_GNU_BUILD_ID` note of a note segment, as hex.
pub fn gnu_build_id(mut notes: &[u8]) -> Option<String> {
    let pad = |n: usize| n.div_ceil(4) * 4;
    while notes.len() >= 12 {
        let namesz = usize::try_from(u32_at(notes, 0)?).ok()?;
        let descsz = usize::try_from(u32_at(notes, 4)?).ok()?;
        let kind = u32_at(notes, 8)?;
        let name = notes.get(12..12 + namesz)?;
        let desc_at = 12 + pad(namesz);
        let desc = notes.get(desc_at..desc_at + descsz)?;
        if kind == NT_GNU_BUILD_ID && name == b"GNU\0" {
            return Some(desc.iter().map(|b| format!("{b:02x}")).collect());
        }
        notes = notes.get(desc_at + pad(descsz)..)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(name: &[u8], kind: u32, desc: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&(name.len() as u32).to_le_bytes());
        out.extend_from_slice(&(desc.len() as u32).to_le_bytes());
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(name);
        out.resize(out.len().div_ceil(4) * 4, 0);
        out.extend_from_slice(desc);
        out.resize(out.len().div_ceil(4) * 4, 0);
        out
    }

    #[test]
    fn the_gnu_build_id_note_is_found_after_other_notes() {
        let mut notes = note(b"GNU\0", 1, &[0, 0, 0, 0, 3, 0, 0, 0]); // an ABI tag
        notes.extend(note(b"stapsdt\0", NT_GNU_BUILD_ID, b"not it")); // same type, other owner
        notes.extend(note(b"GNU\0", NT_GNU_BUILD_ID, &[0xde, 0xad, 0xbe, 0xef, 0x01]));
        assert_eq!(gnu_build_id(&notes).as_deref(), Some("deadbeef01"));
        assert_eq!(gnu_build_id(&notes[..notes.len() - 8]), None, "cut short");
        assert_eq!(gnu_build_id(&[]), None);
    }

    #[test]
    fn this_test_binary_has_a_build_id_and_a_non_elf_file_has_none() {
        let mut exe = std::fs::File::open("/proc/self/exe").expect("own executable");
        let id = from_elf(&mut exe).expect("rustc's linker writes a GNU build id");
        assert!(id.len() >= 16 && id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
        let mut text = std::io::Cursor::new(b"#!/bin/sh\necho not an ELF file\n".repeat(4));
        assert_eq!(from_elf(&mut text), None);
    }
}
