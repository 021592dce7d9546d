//! Model file checks: a file is whole and parses (safetensors, GGUF and PyTorch headers,
//! JSON configs, cache blobs against their checksums) before any model code reads it.

use std::fs::File;
use std::io::{Read, Seek};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Largest safetensors header accepted, as the safetensors format itself limits it.
const MAX_SAFETENSORS_HEADER: u64 = 100_000_000;

/// Check one model file by its kind; returns a short description for `models verify`.
pub fn check(path: &Path) -> Result<String> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    if name.ends_with(".safetensors") {
        check_safetensors(path)
    } else if name.ends_with(".gguf") {
        check_gguf(path)
    } else if name.ends_with(".bin") || name.ends_with(".pt") || name.ends_with(".pth") {
        check_pickle(path)
    } else if name.ends_with(".json") {
        check_json(path)
    } else {
        let len = len(path)?;
        if len == 0 {
            return Err(bad(path, "the file is empty".into()));
        }
        Ok(format!("{len} bytes"))
    }
}

fn bad(path: &Path, what: String) -> Error {
    Error::ModelFile {
        path: path.to_path_buf(),
        what,
        source: None,
    }
}

fn io_err(path: &Path, e: std::io::Error) -> Error {
    Error::ModelFile {
        path: path.to_path_buf(),
        what: "cannot read the file".into(),
        source: Some(Box::new(e)),
    }
}

fn len(path: &Path) -> Result<u64> {
    Ok(std::fs::metadata(path).map_err(|e| io_err(path, e))?.len())
}

/// Parse the safetensors header by hand rather than memory-mapping the whole file: the
/// header alone says where every tensor ends, so a truncated download shows.
fn check_safetensors(path: &Path) -> Result<String> {
    let file_len = len(path)?;
    let mut file = File::open(path).map_err(|e| io_err(path, e))?;
    let mut prefix = [0u8; 8];
    file.read_exact(&mut prefix).map_err(|_| {
        bad(
            path,
            "not a safetensors file: shorter than its header".into(),
        )
    })?;
    let header_len = u64::from_le_bytes(prefix);
    if header_len > MAX_SAFETENSORS_HEADER || 8 + header_len > file_len {
        return Err(bad(
            path,
            "not a safetensors file: bad header length".into(),
        ));
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header).map_err(|e| io_err(path, e))?;
    let header: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&header)
        .map_err(|e| Error::ModelFile {
            path: path.to_path_buf(),
            what: "safetensors header is not valid JSON".into(),
            source: Some(Box::new(e)),
        })?;
    let mut tensors = 0usize;
    let mut data_end = 0u64;
    for (name, info) in &header {
        if name == "__metadata__" {
            continue;
        }
        let end = info
            .get("data_offsets")
            .and_then(|o| o.get(1))
            .and_then(|v| v.as_u64())
            .ok_or_else(|| bad(path, format!("tensor '{name}' has no data_offsets")))?;
        data_end = data_end.max(end);
        tensors += 1;
    }
    let expected = 8 + header_len + data_end;
    if expected != file_len {
        return Err(bad(
            path,
            format!("truncated or damaged: the header describes {expected} bytes, the file has {file_len}"),
        ));
    }
    Ok(format!("safetensors, {tensors} tensors, {file_len} bytes"))
}

fn check_gguf(path: &Path) -> Result<String> {
    let file_len = len(path)?;
    let mut file = File::open(path).map_err(|e| io_err(path, e))?;
    let content = candle_core::quantized::gguf_file::Content::read(&mut file).map_err(|e| {
        Error::ModelFile {
            path: path.to_path_buf(),
            what: "not a readable GGUF file".into(),
            source: Some(Box::new(e)),
        }
    })?;
    let data_end = content
        .tensor_infos
        .values()
        .map(|t| {
            let blocks = t.shape.elem_count() / t.ggml_dtype.block_size();
            t.offset + (blocks * t.ggml_dtype.type_size()) as u64
        })
        .max()
        .unwrap_or(0);
    let expected = content.tensor_data_offset + data_end;
    if expected > file_len {
        return Err(bad(
            path,
            format!("truncated: the header describes {expected} bytes, the file has {file_len}"),
        ));
    }
    let arch = content
        .metadata
        .get("general.architecture")
        .and_then(|v| v.to_string().ok().cloned())
        .unwrap_or_else(|| "unknown".into());
    file.rewind().ok();
    Ok(format!(
        "GGUF, architecture {arch}, {} tensors, {file_len} bytes",
        content.tensor_infos.len()
    ))
}

fn check_pickle(path: &Path) -> Result<String> {
    // candle's reader only walks the pickle opcodes: it executes no code from the file.
    let infos = candle_core::pickle::read_pth_tensor_info(path, false, None).map_err(|e| {
        Error::ModelFile {
            path: path.to_path_buf(),
            what: "not a readable PyTorch checkpoint".into(),
            source: Some(Box::new(e)),
        }
    })?;
    Ok(format!("PyTorch checkpoint, {} tensors", infos.len()))
}

fn check_json(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| io_err(path, e))?;
    serde_json::from_slice::<serde_json::Value>(&bytes).map_err(|e| Error::ModelFile {
        path: path.to_path_buf(),
        what: "not valid JSON".into(),
        source: Some(Box::new(e)),
    })?;
    Ok(format!("JSON, {} bytes", bytes.len()))
}

/// For a file in the Hub cache whose blob is named by its SHA-256 (large files are stored
/// so), check the content against the name. Returns false when the blob name is no checksum.
pub fn check_blob_checksum(path: &Path) -> Result<bool> {
    let blob = std::fs::canonicalize(path).map_err(|e| io_err(path, e))?;
    let name = blob
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    if name.len() != 64 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(false);
    }
    let actual = sha256_file(&blob)?;
    if actual != name.to_ascii_lowercase() {
        return Err(bad(
            path,
            format!(
                "checksum mismatch: expected sha256 {name}, got {actual}; pull the model again"
            ),
        ));
    }
    Ok(true)
}

pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = File::open(path).map_err(|e| io_err(path, e))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(|e| io_err(path, e))?;
    Ok(hex(&hasher.finalize()))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn safetensors_bytes() -> Vec<u8> {
        let header = br#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header);
        bytes.extend_from_slice(&[0u8; 8]);
        bytes
    }

    #[test]
    fn whole_safetensors_passes_and_truncated_fails() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        let bytes = safetensors_bytes();
        std::fs::write(&path, &bytes).unwrap();
        assert!(check(&path).unwrap().contains("1 tensors"));
        std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        let err = check(&path).unwrap_err().to_string();
        assert!(err.contains("truncated"), "{err}");
        std::fs::write(&path, b"garbage!garbage!").unwrap();
        assert!(check(&path).is_err());
    }

    #[test]
    fn json_and_empty_files() {
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("config.json");
        std::fs::write(&json, "{\"a\": 1").unwrap();
        assert!(check(&json)
            .unwrap_err()
            .to_string()
            .contains("not valid JSON"));
        let spm = dir.path().join("source.spm");
        std::fs::write(&spm, "").unwrap();
        assert!(check(&spm).unwrap_err().to_string().contains("empty"));
    }

    #[test]
    fn blob_checksum_is_verified() {
        let dir = tempfile::tempdir().unwrap();
        let content = b"hello";
        let sum = hex(&Sha256::digest(content));
        let blob = dir.path().join(&sum);
        std::fs::write(&blob, content).unwrap();
        assert!(check_blob_checksum(&blob).unwrap());
        std::fs::write(&blob, b"hellO").unwrap();
        assert!(check_blob_checksum(&blob).is_err());
        let other = dir.path().join("etag-not-a-sha");
        std::fs::write(&other, content).unwrap();
        assert!(!check_blob_checksum(&other).unwrap());
    }
}
