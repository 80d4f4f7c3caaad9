//! What a file really is, from its first bytes rather than its declared type or name:
//! executables (PE `MZ`, ELF, Mach-O), scripts (`#!`), OLE2 documents that carry VBA
//! macros, and OOXML documents with a `vbaProject.bin`. Archives (zip) are looked into
//! by the caller.

use crate::mime::find;

/// A kind of content that is blocked whatever its name or declared type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dangerous {
    /// Windows PE/DOS executable (`MZ`).
    PeExecutable,
    /// ELF executable or library.
    Elf,
    /// Mach-O executable (thin or fat).
    MachO,
    /// A script with an interpreter line (`#!`).
    Script,
    /// OLE2 compound document (legacy Office) with a VBA project.
    OleMacro,
    /// OOXML (zip) document with `vbaProject.bin`.
    OoxmlMacro,
}

impl Dangerous {
    pub fn as_str(self) -> &'static str {
        match self {
            Dangerous::PeExecutable => "pe-executable",
            Dangerous::Elf => "elf-executable",
            Dangerous::MachO => "mach-o-executable",
            Dangerous::Script => "script",
            Dangerous::OleMacro => "ole2-macro-document",
            Dangerous::OoxmlMacro => "ooxml-macro-document",
        }
    }
}

const OLE2: &[u8] = b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1";

/// UTF-16LE directory entry names of VBA storage in OLE2 files.
fn utf16(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

/// Classifies content by magic bytes (zip archives are not classified here, except
/// that an OOXML archive's entry names are checked by `ooxml_macro`).
pub fn sniff(data: &[u8]) -> Option<Dangerous> {
    if data.starts_with(b"MZ") {
        return Some(Dangerous::PeExecutable);
    }
    if data.starts_with(b"\x7fELF") {
        return Some(Dangerous::Elf);
    }
    if [
        &b"\xFE\xED\xFA\xCE"[..],
        b"\xFE\xED\xFA\xCF",
        b"\xCE\xFA\xED\xFE",
        b"\xCF\xFA\xED\xFE",
    ]
    .iter()
    .any(|m| data.starts_with(m))
    {
        return Some(Dangerous::MachO);
    }
    if data.starts_with(b"#!") {
        return Some(Dangerous::Script);
    }
    if data.starts_with(OLE2)
        && ["_VBA_PROJECT", "VBA", "Macros"]
            .iter()
            .any(|n| find(data, &utf16(n)).is_some())
    {
        return Some(Dangerous::OleMacro);
    }
    None
}

/// Whether zip entry names say this is a macro-enabled OOXML document.
pub fn ooxml_macro<'a>(names: impl IntoIterator<Item = &'a str>) -> bool {
    names.into_iter().any(|n| {
        n.rsplit('/')
            .next()
            .is_some_and(|f| f.eq_ignore_ascii_case("vbaProject.bin"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_bytes() {
        assert_eq!(sniff(b"MZ\x90\0"), Some(Dangerous::PeExecutable));
        assert_eq!(sniff(b"\x7fELF\x02"), Some(Dangerous::Elf));
        assert_eq!(sniff(b"#!/bin/sh\nrm -rf"), Some(Dangerous::Script));
        assert_eq!(sniff(b"\xCF\xFA\xED\xFE"), Some(Dangerous::MachO));
        assert_eq!(sniff(b"%PDF-1.7"), None);
        assert_eq!(sniff(b"\x89PNG\r\n"), None);
        let mut ole = OLE2.to_vec();
        ole.extend_from_slice(&[0; 100]);
        assert_eq!(
            sniff(&ole),
            None,
            "an OLE2 file without VBA storage is allowed"
        );
        ole.extend_from_slice(&utf16("_VBA_PROJECT"));
        assert_eq!(sniff(&ole), Some(Dangerous::OleMacro));
        assert!(ooxml_macro(["[Content_Types].xml", "word/vbaProject.bin"]));
        assert!(!ooxml_macro(["[Content_Types].xml", "word/document.xml"]));
    }
}
