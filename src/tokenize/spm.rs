//! SentencePiece models (`source.spm`, `target.spm`): read the model file and encode and
//! decode text exactly as the sentencepiece library does.
//!
//! Why not the `tokenizers` crate: it has no `.spm` loader, and its building blocks copy the
//! *fast* tokenizer converters, which differ from sentencepiece itself, the reference that
//! transformers' (slow, sentencepiece-backed) `MarianTokenizer` runs. Its `Precompiled`
//! normalizer works grapheme by grapheme and takes the shortest rule, so `"e\u{301}\u{301}"`
//! loses its second accent where sentencepiece keeps it; its `Unigram` model matches control
//! and `<unk>` pieces in the text (sentencepiece never does) and sums scores in `f64` where
//! sentencepiece uses `f32`. So this module mirrors sentencepiece's own code, which is short:
//! the normalizer (`normalizer.cc`: longest match in the precompiled double-array charsmap,
//! whitespace trimming and collapsing, `▁` escaping), the unigram Viterbi search
//! (`unigram_model.cc`, `EncodeOptimized`) and the piece decoder
//! (`sentencepiece_processor.cc`, `Decode`).
//!
//! The model file is a protobuf `ModelProto` (`sentencepiece_model.proto`). A protobuf crate
//! would bring code generation or a runtime for the five fields read here, so a minimal
//! reader of the wire format does it by hand. Models this code cannot reproduce exactly
//! (BPE/word/char models, byte fallback, whitespace as suffix) are refused when loaded.

use std::collections::HashMap;
use std::path::Path;

use crate::error::{Error, Result};

/// The word-boundary mark sentencepiece puts in place of spaces (U+2581).
pub const SPACE_SYMBOL: &str = "\u{2581}";

/// What is wrong with a model file, as the source of an [`Error::ModelFile`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SpmError(String);

fn spm_err(what: impl Into<String>) -> SpmError {
    SpmError(what.into())
}

// ----------------------------------------------------------------------------------------
// The model file: ModelProto
// ----------------------------------------------------------------------------------------

/// `ModelProto.SentencePiece.Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PieceType {
    Normal,
    Unknown,
    Control,
    UserDefined,
    Unused,
    Byte,
}

impl PieceType {
    fn from_proto(value: u64) -> Option<PieceType> {
        Some(match value {
            1 => PieceType::Normal,
            2 => PieceType::Unknown,
            3 => PieceType::Control,
            4 => PieceType::UserDefined,
            5 => PieceType::Unused,
            6 => PieceType::Byte,
            _ => return None,
        })
    }
}

/// One vocabulary entry of the model.
#[derive(Debug, Clone, PartialEq)]
pub struct Piece {
    pub piece: String,
    pub score: f32,
    pub kind: PieceType,
}

/// The `NormalizerSpec` fields that change encoding (defaults as in the .proto).
#[derive(Debug, Clone, PartialEq)]
pub struct NormalizerSpec {
    pub name: String,
    pub precompiled_charsmap: Vec<u8>,
    pub add_dummy_prefix: bool,
    pub remove_extra_whitespaces: bool,
    pub escape_whitespaces: bool,
}

impl Default for NormalizerSpec {
    fn default() -> Self {
        NormalizerSpec {
            name: String::new(),
            precompiled_charsmap: Vec::new(),
            add_dummy_prefix: true,
            remove_extra_whitespaces: true,
            escape_whitespaces: true,
        }
    }
}

/// The `TrainerSpec` fields that change encoding or decoding (defaults as in the .proto).
#[derive(Debug, Clone, PartialEq)]
pub struct TrainerSpec {
    /// 1 unigram, 2 BPE, 3 word, 4 char.
    pub model_type: u64,
    pub treat_whitespace_as_suffix: bool,
    pub byte_fallback: bool,
    /// What `<unk>` decodes to.
    pub unk_surface: String,
}

impl Default for TrainerSpec {
    fn default() -> Self {
        TrainerSpec {
            model_type: 1,
            treat_whitespace_as_suffix: false,
            byte_fallback: false,
            unk_surface: " \u{2047} ".into(),
        }
    }
}

/// The parts of a SentencePiece `ModelProto` that encoding and decoding read.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ModelProto {
    pub pieces: Vec<Piece>,
    pub trainer_spec: TrainerSpec,
    pub normalizer_spec: NormalizerSpec,
    pub denormalizer_spec: Option<NormalizerSpec>,
}

/// One field of a protobuf message, by wire type.
enum WireValue<'a> {
    Varint(u64),
    Fixed64,
    Bytes(&'a [u8]),
    Fixed32(u32),
}

/// A cursor over one protobuf message.
struct WireReader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> WireReader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        WireReader { buf, pos: 0 }
    }

    fn varint(&mut self) -> Result<u64, SpmError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self
                .buf
                .get(self.pos)
                .ok_or_else(|| spm_err("truncated protobuf varint"))?;
            self.pos += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(spm_err("protobuf varint longer than 10 bytes"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], SpmError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.buf.len())
            .ok_or_else(|| spm_err("truncated protobuf field"))?;
        let bytes = &self.buf[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    /// The next field number and value, or `None` at the end of the message.
    fn field(&mut self) -> Result<Option<(u64, WireValue<'a>)>, SpmError> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let number = key >> 3;
        let value = match key & 7 {
            0 => WireValue::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                WireValue::Fixed64
            }
            2 => {
                let len = usize::try_from(self.varint()?)
                    .map_err(|_| spm_err("protobuf length out of range"))?;
                WireValue::Bytes(self.take(len)?)
            }
            5 => {
                let b = self.take(4)?;
                WireValue::Fixed32(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            }
            other => {
                return Err(spm_err(format!(
                    "unsupported protobuf wire type {other} (field {number})"
                )))
            }
        };
        Ok(Some((number, value)))
    }
}

fn wire_bytes<'a>(value: WireValue<'a>, what: &str) -> Result<&'a [u8], SpmError> {
    match value {
        WireValue::Bytes(b) => Ok(b),
        _ => Err(spm_err(format!(
            "{what}: expected a length-delimited field"
        ))),
    }
}

fn wire_string(value: WireValue<'_>, what: &str) -> Result<String, SpmError> {
    let bytes = wire_bytes(value, what)?;
    String::from_utf8(bytes.to_vec()).map_err(|_| spm_err(format!("{what} is not UTF-8")))
}

fn wire_varint(value: WireValue<'_>, what: &str) -> Result<u64, SpmError> {
    match value {
        WireValue::Varint(v) => Ok(v),
        _ => Err(spm_err(format!("{what}: expected a varint field"))),
    }
}

fn wire_f32(value: WireValue<'_>, what: &str) -> Result<f32, SpmError> {
    match value {
        WireValue::Fixed32(bits) => Ok(f32::from_bits(bits)),
        _ => Err(spm_err(format!("{what}: expected a 32-bit field"))),
    }
}

impl ModelProto {
    /// Parse a serialized `ModelProto` (the content of a `.spm`/`.model` file).
    pub fn parse(bytes: &[u8]) -> Result<ModelProto, SpmError> {
        let mut proto = ModelProto::default();
        let mut reader = WireReader::new(bytes);
        while let Some((number, value)) = reader.field()? {
            match number {
                1 => proto.pieces.push(parse_piece(
                    wire_bytes(value, "piece")?,
                    proto.pieces.len(),
                )?),
                2 => proto.trainer_spec = parse_trainer_spec(wire_bytes(value, "trainer_spec")?)?,
                3 => {
                    proto.normalizer_spec =
                        parse_normalizer_spec(wire_bytes(value, "normalizer_spec")?)?
                }
                5 => {
                    proto.denormalizer_spec = Some(parse_normalizer_spec(wire_bytes(
                        value,
                        "denormalizer_spec",
                    )?)?)
                }
                _ => {}
            }
        }
        Ok(proto)
    }
}

fn parse_piece(bytes: &[u8], index: usize) -> Result<Piece, SpmError> {
    let mut piece = Piece {
        piece: String::new(),
        score: 0.0,
        kind: PieceType::Normal,
    };
    let mut reader = WireReader::new(bytes);
    while let Some((number, value)) = reader.field()? {
        match number {
            1 => piece.piece = wire_string(value, "piece text")?,
            2 => piece.score = wire_f32(value, "piece score")?,
            3 => {
                let raw = wire_varint(value, "piece type")?;
                piece.kind = PieceType::from_proto(raw)
                    .ok_or_else(|| spm_err(format!("piece {index} has unknown type {raw}")))?;
            }
            _ => {}
        }
    }
    Ok(piece)
}

fn parse_trainer_spec(bytes: &[u8]) -> Result<TrainerSpec, SpmError> {
    let mut spec = TrainerSpec::default();
    let mut reader = WireReader::new(bytes);
    while let Some((number, value)) = reader.field()? {
        match number {
            3 => spec.model_type = wire_varint(value, "model_type")?,
            24 => {
                spec.treat_whitespace_as_suffix =
                    wire_varint(value, "treat_whitespace_as_suffix")? != 0
            }
            35 => spec.byte_fallback = wire_varint(value, "byte_fallback")? != 0,
            44 => spec.unk_surface = wire_string(value, "unk_surface")?,
            _ => {}
        }
    }
    Ok(spec)
}

fn parse_normalizer_spec(bytes: &[u8]) -> Result<NormalizerSpec, SpmError> {
    let mut spec = NormalizerSpec::default();
    let mut reader = WireReader::new(bytes);
    while let Some((number, value)) = reader.field()? {
        match number {
            1 => spec.name = wire_string(value, "normalizer name")?,
            2 => spec.precompiled_charsmap = wire_bytes(value, "precompiled_charsmap")?.to_vec(),
            3 => spec.add_dummy_prefix = wire_varint(value, "add_dummy_prefix")? != 0,
            4 => {
                spec.remove_extra_whitespaces = wire_varint(value, "remove_extra_whitespaces")? != 0
            }
            5 => spec.escape_whitespaces = wire_varint(value, "escape_whitespaces")? != 0,
            _ => {}
        }
    }
    Ok(spec)
}

// ----------------------------------------------------------------------------------------
// Normalization: the precompiled charsmap (a darts-clone double array) and whitespace rules
// ----------------------------------------------------------------------------------------

/// `precompiled_charsmap`: `<u32 trie size><darts double array><NUL-separated replacements>`.
#[derive(Debug, Clone)]
struct CharsMap {
    units: Vec<u32>,
    replacements: Vec<u8>,
}

impl CharsMap {
    fn parse(blob: &[u8]) -> Result<CharsMap, SpmError> {
        if blob.len() <= 4 {
            return Err(spm_err("precompiled_charsmap is broken (too short)"));
        }
        let trie_size = u32::from_le_bytes([blob[0], blob[1], blob[2], blob[3]]) as usize;
        if trie_size >= blob.len() {
            return Err(spm_err(
                "precompiled_charsmap is broken (trie larger than the blob)",
            ));
        }
        let rest = &blob[4..];
        let trie_size = trie_size.min(rest.len());
        let units = rest[..trie_size]
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Ok(CharsMap {
            units,
            replacements: rest[trie_size..].to_vec(),
        })
    }

    /// The longest rule that is a prefix of `input`: (bytes matched, replacement offset).
    /// darts-clone `commonPrefixSearch`, keeping the longest result as sentencepiece does.
    fn longest_prefix(&self, input: &[u8]) -> Option<(usize, usize)> {
        let unit = |pos: usize| self.units.get(pos).copied();
        let offset = |u: u32| ((u >> 10) << ((u & (1 << 9)) >> 6)) as usize;
        let has_leaf = |u: u32| (u >> 8) & 1 == 1;
        let label = |u: u32| u & ((1 << 31) | 0xff);
        let value = |u: u32| (u & ((1 << 31) - 1)) as usize;

        let mut node = offset(unit(0)?);
        let mut best = None;
        for (i, &byte) in input.iter().enumerate() {
            node ^= byte as usize;
            let u = unit(node)?;
            if label(u) != byte as u32 {
                break;
            }
            node ^= offset(u);
            if has_leaf(u) {
                if let Some(leaf) = unit(node) {
                    best = Some((i + 1, value(leaf)));
                }
            }
        }
        best
    }

    /// The replacement text that starts at `offset`, up to its NUL.
    fn replacement(&self, offset: usize) -> &str {
        let tail = self.replacements.get(offset..).unwrap_or_default();
        let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
        // Rules are UTF-8 in every model sentencepiece builds; a broken one cannot be
        // represented in a `String`, so it reads as U+FFFD as a malformed input byte would.
        std::str::from_utf8(&tail[..end]).unwrap_or("\u{FFFD}")
    }
}

/// sentencepiece's `Normalizer`: charsmap rules, then whitespace trimming, collapsing and
/// escaping, as `normalizer.cc` does them.
#[derive(Debug, Clone)]
struct Normalizer {
    charsmap: Option<CharsMap>,
    add_dummy_prefix: bool,
    remove_extra_whitespaces: bool,
    escape_whitespaces: bool,
    /// User-defined symbols pass through unnormalized (sentencepiece's prefix matcher).
    user_defined: Vec<String>,
}

impl Normalizer {
    fn new(spec: &NormalizerSpec, user_defined: Vec<String>) -> Result<Normalizer, SpmError> {
        let charsmap = if spec.precompiled_charsmap.is_empty() {
            None
        } else {
            Some(CharsMap::parse(&spec.precompiled_charsmap)?)
        };
        Ok(Normalizer {
            charsmap,
            add_dummy_prefix: spec.add_dummy_prefix,
            remove_extra_whitespaces: spec.remove_extra_whitespaces,
            escape_whitespaces: spec.escape_whitespaces,
            user_defined,
        })
    }

    /// The normalized form of the first rule or character of `input`, and the bytes it spans.
    fn normalize_prefix<'a>(&'a self, input: &'a str) -> (&'a str, usize) {
        let user = self
            .user_defined
            .iter()
            .filter(|s| input.starts_with(s.as_str()))
            .map(String::len)
            .max();
        if let Some(len) = user {
            return (&input[..len], len);
        }
        if let Some((len, offset)) = self
            .charsmap
            .as_ref()
            .and_then(|m| m.longest_prefix(input.as_bytes()))
        {
            return (self.charsmap.as_ref().unwrap().replacement(offset), len);
        }
        let len = input.chars().next().map_or(0, char::len_utf8);
        (&input[..len], len)
    }

    fn normalize(&self, mut input: &str) -> String {
        let mut out = String::new();
        if input.is_empty() {
            return out;
        }
        if self.remove_extra_whitespaces {
            while !input.is_empty() {
                let (sp, len) = self.normalize_prefix(input);
                if sp != " " {
                    break;
                }
                input = &input[len..];
            }
        }
        if input.is_empty() {
            return out;
        }
        out.reserve(input.len() * 3);
        let space = if self.escape_whitespaces {
            SPACE_SYMBOL
        } else {
            " "
        };
        if self.add_dummy_prefix {
            out.push_str(space);
        }
        let mut is_prev_space = self.remove_extra_whitespaces;
        while !input.is_empty() {
            let (mut sp, len) = self.normalize_prefix(input);
            if is_prev_space {
                sp = sp.trim_start_matches(' ');
            }
            if !sp.is_empty() {
                if self.escape_whitespaces {
                    for (i, part) in sp.split(' ').enumerate() {
                        if i > 0 {
                            out.push_str(SPACE_SYMBOL);
                        }
                        out.push_str(part);
                    }
                } else {
                    out.push_str(sp);
                }
                is_prev_space = sp.ends_with(' ');
            }
            input = &input[len..];
            if !self.remove_extra_whitespaces {
                is_prev_space = false;
            }
        }
        if self.remove_extra_whitespaces {
            while out.ends_with(space) {
                out.truncate(out.len() - space.len());
            }
        }
        out
    }
}

// ----------------------------------------------------------------------------------------
// The unigram model
// ----------------------------------------------------------------------------------------

/// A byte trie over the pieces the Viterbi search may use (normal, user-defined, unused).
#[derive(Debug, Clone, Default)]
struct PieceTrie {
    nodes: Vec<TrieNode>,
}

#[derive(Debug, Clone, Default)]
struct TrieNode {
    /// Children by byte, sorted.
    edges: Vec<(u8, u32)>,
    piece: Option<u32>,
}

impl PieceTrie {
    fn build<'a>(pieces: impl Iterator<Item = (&'a str, u32)>) -> PieceTrie {
        let mut nodes = vec![TrieNode::default()];
        for (text, id) in pieces {
            let mut node = 0usize;
            for &byte in text.as_bytes() {
                node = match nodes[node].edges.binary_search_by_key(&byte, |e| e.0) {
                    Ok(i) => nodes[node].edges[i].1 as usize,
                    Err(i) => {
                        let child = nodes.len();
                        nodes[node].edges.insert(i, (byte, child as u32));
                        nodes.push(TrieNode::default());
                        child
                    }
                };
            }
            nodes[node].piece = Some(id);
        }
        PieceTrie { nodes }
    }

    fn child(&self, node: usize, byte: u8) -> Option<usize> {
        let edges = &self.nodes[node].edges;
        edges
            .binary_search_by_key(&byte, |e| e.0)
            .ok()
            .map(|i| edges[i].1 as usize)
    }
}

/// A loaded SentencePiece unigram model: encode text into pieces, decode pieces into text.
#[derive(Debug, Clone)]
pub struct SentencePiece {
    pieces: Vec<Piece>,
    piece_ids: HashMap<String, u32>,
    unk_id: u32,
    unk_surface: String,
    normalizer: Normalizer,
    denormalizer: Option<Normalizer>,
    trie: PieceTrie,
    min_score: f32,
    max_score: f32,
    add_dummy_prefix: bool,
    remove_extra_whitespaces: bool,
}

/// The best path ending at one byte position (sentencepiece's `BestPathNode`).
#[derive(Clone, Copy)]
struct BestPath {
    id: u32,
    score: f32,
    starts_at: Option<usize>,
}

impl SentencePiece {
    /// Read a model file; errors name the file.
    pub fn load(path: &Path) -> Result<SentencePiece> {
        let bytes = std::fs::read(path).map_err(|e| Error::ModelFile {
            path: path.to_path_buf(),
            what: "cannot read the SentencePiece model".into(),
            source: Some(Box::new(e)),
        })?;
        let model = ModelProto::parse(&bytes)
            .and_then(SentencePiece::from_proto)
            .map_err(|e| Error::ModelFile {
                path: path.to_path_buf(),
                what: "not a usable SentencePiece model".into(),
                source: Some(Box::new(e)),
            })?;
        Ok(model)
    }

    pub fn from_proto(proto: ModelProto) -> Result<SentencePiece, SpmError> {
        let trainer = &proto.trainer_spec;
        if trainer.model_type != 1 {
            return Err(spm_err(format!(
                "model type {} is not unigram; Marian models use unigram SentencePiece models",
                trainer.model_type
            )));
        }
        if trainer.byte_fallback || proto.pieces.iter().any(|p| p.kind == PieceType::Byte) {
            return Err(spm_err(
                "byte-fallback models are not supported (Marian models do not use them)",
            ));
        }
        if trainer.treat_whitespace_as_suffix {
            return Err(spm_err("treat_whitespace_as_suffix is not supported"));
        }
        let mut piece_ids = HashMap::with_capacity(proto.pieces.len());
        let mut unk_id = None;
        let (mut min_score, mut max_score) = (f32::MAX, f32::MIN_POSITIVE);
        for (id, piece) in proto.pieces.iter().enumerate() {
            let id = u32::try_from(id).map_err(|_| spm_err("too many pieces"))?;
            if piece.piece.is_empty() {
                return Err(spm_err(format!("piece {id} is empty")));
            }
            if piece_ids.insert(piece.piece.clone(), id).is_some() {
                return Err(spm_err(format!("piece {:?} is defined twice", piece.piece)));
            }
            match piece.kind {
                PieceType::Unknown if unk_id.is_some() => {
                    return Err(spm_err("more than one unknown piece"))
                }
                PieceType::Unknown => unk_id = Some(id),
                PieceType::Normal => {
                    min_score = min_score.min(piece.score);
                    max_score = max_score.max(piece.score);
                }
                _ => {}
            }
        }
        let unk_id = unk_id.ok_or_else(|| spm_err("the model has no unknown piece"))?;
        let user_defined: Vec<String> = proto
            .pieces
            .iter()
            .filter(|p| p.kind == PieceType::UserDefined)
            .map(|p| p.piece.clone())
            .collect();
        let trie = PieceTrie::build(
            proto
                .pieces
                .iter()
                .zip(0u32..)
                .filter(|(p, _)| {
                    matches!(
                        p.kind,
                        PieceType::Normal | PieceType::UserDefined | PieceType::Unused
                    )
                })
                .map(|(p, id)| (p.piece.as_str(), id)),
        );
        let normalizer = Normalizer::new(&proto.normalizer_spec, user_defined)?;
        let denormalizer = match &proto.denormalizer_spec {
            Some(spec) if !spec.precompiled_charsmap.is_empty() => {
                Some(Normalizer::new(spec, Vec::new())?)
            }
            _ => None,
        };
        Ok(SentencePiece {
            unk_surface: proto.trainer_spec.unk_surface.clone(),
            add_dummy_prefix: proto.normalizer_spec.add_dummy_prefix,
            remove_extra_whitespaces: proto.normalizer_spec.remove_extra_whitespaces,
            pieces: proto.pieces,
            piece_ids,
            unk_id,
            normalizer,
            denormalizer,
            trie,
            min_score,
            max_score,
        })
    }

    /// Number of pieces.
    pub fn len(&self) -> usize {
        self.pieces.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pieces.is_empty()
    }

    /// The piece with this id, as `IdToPiece`.
    pub fn id_to_piece(&self, id: u32) -> Option<&str> {
        self.pieces.get(id as usize).map(|p| p.piece.as_str())
    }

    /// The id of a piece, or the unknown id, as `PieceToId`.
    pub fn piece_to_id(&self, piece: &str) -> u32 {
        self.piece_ids.get(piece).copied().unwrap_or(self.unk_id)
    }

    /// The text as sentencepiece normalizes it before segmenting (`▁` for spaces).
    pub fn normalize(&self, text: &str) -> String {
        self.normalizer.normalize(text)
    }

    /// The pieces of `text`, as `encode(text, out_type=str)`.
    pub fn encode(&self, text: &str) -> Vec<String> {
        let mut out = Vec::new();
        self.encode_with(text, |piece| out.push(piece.to_string()));
        out
    }

    /// Call `emit` with each piece of `text` in order, without allocating one string per
    /// piece. Runs of unknown characters come as one piece, as sentencepiece merges them.
    pub fn encode_with(&self, text: &str, mut emit: impl FnMut(&str)) {
        let normalized = self.normalizer.normalize(text);
        let spans = self.viterbi(&normalized);
        // Merge consecutive unknown pieces (`PopulateSentencePieceText`).
        let mut start = 0;
        while start < spans.len() {
            let (begin, mut end, id) = spans[start];
            let mut next = start + 1;
            if id == self.unk_id {
                while next < spans.len() && spans[next].2 == self.unk_id {
                    end = spans[next].1;
                    next += 1;
                }
            }
            emit(&normalized[begin..end]);
            start = next;
        }
    }

    /// Best segmentation of a normalized string: (begin, end, piece id) in order.
    /// `EncodeOptimized`, scores in `f32` as sentencepiece keeps them.
    fn viterbi(&self, normalized: &str) -> Vec<(usize, usize, u32)> {
        let bytes = normalized.as_bytes();
        let size = bytes.len();
        if size == 0 {
            return Vec::new();
        }
        const UNK_PENALTY: f32 = 10.0;
        let unk_score = self.min_score - UNK_PENALTY;
        let unset = BestPath {
            id: self.unk_id,
            score: 0.0,
            starts_at: None,
        };
        let mut best = vec![unset; size + 1];
        let mut starts_at = 0;
        while starts_at < size {
            let till_here = best[starts_at].score;
            let mblen = normalized[starts_at..]
                .chars()
                .next()
                .map_or(1, char::len_utf8);
            let mut has_single_node = false;
            let mut node = 0usize;
            let mut key_pos = starts_at;
            while key_pos < size {
                let Some(child) = self.trie.child(node, bytes[key_pos]) else {
                    break;
                };
                node = child;
                key_pos += 1;
                let Some(id) = self.trie.nodes[node].piece else {
                    continue;
                };
                let piece = &self.pieces[id as usize];
                if piece.kind == PieceType::Unused {
                    continue;
                }
                let length = key_pos - starts_at;
                let target = &mut best[key_pos];
                if piece.kind == PieceType::UserDefined {
                    // `length * max_score_ - 0.1`: a float product, then double arithmetic.
                    let score = f64::from(length as f32 * self.max_score) - 0.1;
                    let candidate = score + f64::from(till_here);
                    if target.starts_at.is_none() || candidate > f64::from(target.score) {
                        *target = BestPath {
                            id,
                            score: candidate as f32,
                            starts_at: Some(starts_at),
                        };
                    }
                } else {
                    let candidate = piece.score + till_here;
                    if target.starts_at.is_none() || candidate > target.score {
                        *target = BestPath {
                            id,
                            score: candidate,
                            starts_at: Some(starts_at),
                        };
                    }
                }
                if length == mblen {
                    has_single_node = true;
                }
            }
            if !has_single_node {
                let target = &mut best[starts_at + mblen];
                let candidate = unk_score + till_here;
                if target.starts_at.is_none() || candidate > target.score {
                    *target = BestPath {
                        id: self.unk_id,
                        score: candidate,
                        starts_at: Some(starts_at),
                    };
                }
            }
            starts_at += mblen;
        }
        let mut spans = Vec::new();
        let mut ends_at = size;
        while ends_at > 0 {
            let node = best[ends_at];
            // Every position that is a character boundary was reached (at worst by <unk>).
            let begin = node.starts_at.expect("viterbi reaches every boundary");
            spans.push((begin, ends_at, node.id));
            ends_at = begin;
        }
        spans.reverse();
        spans
    }

    /// Join pieces into text, as `decode_pieces`: `▁` becomes a space, the space the
    /// encoder added in front is dropped, control pieces vanish, `<unk>` shows as the unknown
    /// surface (` ⁇ `) and pieces outside the model are copied as they are.
    pub fn decode_pieces<S: AsRef<str>>(&self, pieces: &[S]) -> String {
        let mut text = String::new();
        let mut is_bos_ws = true;
        let mut bos_ws_seen = false;
        for piece in pieces {
            let piece = piece.as_ref();
            if bos_ws_seen || !text.is_empty() {
                is_bos_ws = false;
            }
            bos_ws_seen = self.decode_piece(piece, is_bos_ws, &mut text);
        }
        match &self.denormalizer {
            Some(denormalizer) => denormalizer.normalize(&text),
            None => text,
        }
    }

    /// Append one decoded piece; true when it consumed the sentence-initial `▁`.
    fn decode_piece(&self, piece: &str, is_bos_ws: bool, text: &mut String) -> bool {
        let id = self.piece_to_id(piece);
        match self.pieces[id as usize].kind {
            PieceType::Control => return false,
            PieceType::Unknown => {
                if self.pieces[id as usize].piece == piece {
                    text.push_str(&self.unk_surface);
                } else {
                    text.push_str(piece);
                }
                return false;
            }
            _ => {}
        }
        let mut piece = piece;
        let mut has_bos_ws = false;
        if is_bos_ws && (self.add_dummy_prefix || self.remove_extra_whitespaces) {
            if let Some(rest) = piece.strip_prefix(SPACE_SYMBOL) {
                piece = rest;
                has_bos_ws = true;
            }
            if self.remove_extra_whitespaces {
                // All leading whitespace goes, so the next piece is still at the start.
                has_bos_ws = false;
            }
        }
        for (i, part) in piece.split(SPACE_SYMBOL).enumerate() {
            if i > 0 {
                text.push(' ');
            }
            text.push_str(part);
        }
        has_bos_ws
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Protobuf writers for hand-made test models.
    fn varint(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }

    fn field_bytes(number: u64, bytes: &[u8], out: &mut Vec<u8>) {
        varint(number << 3 | 2, out);
        varint(bytes.len() as u64, out);
        out.extend_from_slice(bytes);
    }

    fn field_varint(number: u64, v: u64, out: &mut Vec<u8>) {
        varint(number << 3, out);
        varint(v, out);
    }

    fn piece_msg(text: &str, score: f32, kind: u64) -> Vec<u8> {
        let mut m = Vec::new();
        field_bytes(1, text.as_bytes(), &mut m);
        varint(2 << 3 | 5, &mut m);
        m.extend_from_slice(&score.to_le_bytes());
        if kind != 1 {
            field_varint(3, kind, &mut m);
        }
        m
    }

    /// A model with no charsmap: `<unk>`, `<s>`, `</s>`, then normal pieces.
    pub(crate) fn model_bytes(normal: &[(&str, f32)], extra: &[(&str, f32, u64)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (text, score, kind) in [("<unk>", 0.0, 2), ("<s>", 0.0, 3), ("</s>", 0.0, 3)] {
            field_bytes(1, &piece_msg(text, score, kind), &mut out);
        }
        for (text, score) in normal {
            field_bytes(1, &piece_msg(text, *score, 1), &mut out);
        }
        for (text, score, kind) in extra {
            field_bytes(1, &piece_msg(text, *score, *kind), &mut out);
        }
        let mut trainer = Vec::new();
        field_varint(3, 1, &mut trainer);
        field_varint(16, 4, &mut trainer); // num_threads: an unread field is skipped
        field_bytes(2, &trainer, &mut out);
        let mut normalizer = Vec::new();
        field_bytes(1, b"identity", &mut normalizer);
        field_bytes(3, &normalizer, &mut out);
        out
    }

    fn small_model() -> SentencePiece {
        let bytes = model_bytes(
            &[
                ("\u{2581}", -2.0),
                ("a", -3.0),
                ("b", -3.5),
                ("\u{2581}ab", -4.0),
                ("ab", -5.0),
                ("\u{2581}a", -3.2),
            ],
            &[],
        );
        SentencePiece::from_proto(ModelProto::parse(&bytes).unwrap()).unwrap()
    }

    #[test]
    fn protobuf_reader_reads_pieces_and_specs() {
        let bytes = model_bytes(&[("\u{2581}a", -1.5)], &[("<sep>", 0.0, 4)]);
        let proto = ModelProto::parse(&bytes).unwrap();
        assert_eq!(proto.pieces.len(), 5);
        assert_eq!(proto.pieces[0].kind, PieceType::Unknown);
        assert_eq!(proto.pieces[2].kind, PieceType::Control);
        assert_eq!(proto.pieces[3].piece, "\u{2581}a");
        assert_eq!(proto.pieces[3].score, -1.5);
        assert_eq!(proto.pieces[3].kind, PieceType::Normal);
        assert_eq!(proto.pieces[4].kind, PieceType::UserDefined);
        assert_eq!(proto.trainer_spec.model_type, 1);
        assert_eq!(proto.trainer_spec.unk_surface, " \u{2047} ");
        assert_eq!(proto.normalizer_spec.name, "identity");
        assert!(proto.normalizer_spec.add_dummy_prefix);
        assert!(proto.normalizer_spec.remove_extra_whitespaces);
        assert!(proto.denormalizer_spec.is_none());
    }

    #[test]
    fn protobuf_reader_rejects_truncated_input() {
        let bytes = model_bytes(&[("\u{2581}a", -1.5)], &[]);
        assert!(ModelProto::parse(&bytes[..bytes.len() - 3]).is_err());
        assert!(ModelProto::parse(&[0x0a, 0x05, 0x01]).is_err());
        assert!(ModelProto::parse(&[0x0b]).is_err(), "wire type 3 (groups)");
    }

    #[test]
    fn refuses_models_it_cannot_reproduce() {
        let mut bytes = model_bytes(&[("a", -1.0)], &[]);
        let mut trainer = Vec::new();
        field_varint(35, 1, &mut trainer);
        field_bytes(2, &trainer, &mut bytes);
        let err = SentencePiece::from_proto(ModelProto::parse(&bytes).unwrap()).unwrap_err();
        assert!(err.to_string().contains("byte-fallback"), "{err}");

        let mut bytes = Vec::new();
        field_bytes(1, &piece_msg("a", -1.0, 1), &mut bytes);
        let err = SentencePiece::from_proto(ModelProto::parse(&bytes).unwrap()).unwrap_err();
        assert!(err.to_string().contains("no unknown piece"), "{err}");
    }

    #[test]
    fn normalizes_whitespace_like_sentencepiece() {
        let sp = small_model();
        assert_eq!(sp.normalize(""), "");
        assert_eq!(sp.normalize("   "), "");
        assert_eq!(sp.normalize("  a  b "), "\u{2581}a\u{2581}b");
        // Without a charsmap only ' ' is whitespace.
        assert_eq!(sp.normalize("a\tb"), "\u{2581}a\tb");
    }

    #[test]
    fn viterbi_picks_the_best_path_and_merges_unknowns() {
        let sp = small_model();
        // ▁ab (-4.0) beats ▁a + b (-6.7) and ▁ + ab (-7.0).
        assert_eq!(sp.encode("ab"), ["\u{2581}ab"]);
        assert_eq!(sp.encode("ab ba"), ["\u{2581}ab", "\u{2581}", "b", "a"]);
        // Unknown characters in a row come out as one piece.
        assert_eq!(sp.encode("xyz a"), ["\u{2581}", "xyz", "\u{2581}a"]);
        assert_eq!(sp.encode(""), Vec::<String>::new());
        // Control pieces are never matched in text.
        assert_eq!(sp.encode("</s>"), ["\u{2581}", "</s>"]);
    }

    #[test]
    fn user_defined_symbols_win_and_skip_normalization() {
        let bytes = model_bytes(&[("\u{2581}", -1.0), ("a", -1.0)], &[("<x>", 0.0, 4)]);
        let sp = SentencePiece::from_proto(ModelProto::parse(&bytes).unwrap()).unwrap();
        assert_eq!(sp.encode("a<x>a"), ["\u{2581}", "a", "<x>", "a"]);
    }

    #[test]
    fn decodes_pieces_like_sentencepiece() {
        let sp = small_model();
        let d = |p: &[&str]| sp.decode_pieces(p);
        assert_eq!(d(&["\u{2581}ab", "\u{2581}a"]), "ab a");
        // All leading ▁ go when extra whitespace is removed.
        assert_eq!(d(&["\u{2581}", "\u{2581}a"]), "a");
        assert_eq!(d(&["<s>", "\u{2581}a"]), "a");
        assert_eq!(d(&["<unk>", "\u{2581}a"]), " \u{2047}  a");
        // A piece the model lacks is copied as is, ▁ included, and ends the start.
        assert_eq!(d(&["\u{2581}zz", "\u{2581}a"]), "\u{2581}zz a");
        assert_eq!(d(&[] as &[&str]), "");
    }

    /// A charsmap with the rules "a" → "X" and "ab" → "Y": a darts-clone double array laid
    /// out by hand (root offset 4; `a` at 4^0x61 = 101 with a leaf at 101^1 = 100; `b` at
    /// 100^0x62 = 6 with a leaf at 6^1 = 7), then the NUL-terminated replacements.
    fn tiny_charsmap() -> Vec<u8> {
        let mut units = vec![0u32; 102];
        units[0] = 4 << 10;
        units[101] = 0x61 | 1 << 8 | 1 << 10;
        units[100] = 1 << 31; // value 0: "X"
        units[6] = 0x62 | 1 << 8 | 1 << 10;
        units[7] = 1 << 31 | 2; // value 2: "Y"
        let mut blob = ((units.len() * 4) as u32).to_le_bytes().to_vec();
        for u in units {
            blob.extend_from_slice(&u.to_le_bytes());
        }
        blob.extend_from_slice(b"X\0Y\0");
        blob
    }

    #[test]
    fn charsmap_takes_the_longest_rule() {
        let map = CharsMap::parse(&tiny_charsmap()).unwrap();
        assert_eq!(map.longest_prefix(b"abc"), Some((2, 2)));
        assert_eq!(map.longest_prefix(b"ac"), Some((1, 0)));
        assert_eq!(map.longest_prefix(b"b"), None);
        assert_eq!(map.longest_prefix(b""), None);
        assert_eq!(map.replacement(0), "X");
        assert_eq!(map.replacement(2), "Y");
        let spec = NormalizerSpec {
            precompiled_charsmap: tiny_charsmap(),
            ..NormalizerSpec::default()
        };
        let normalizer = Normalizer::new(&spec, Vec::new()).unwrap();
        assert_eq!(
            normalizer.normalize(" ab  a b"),
            "\u{2581}Y\u{2581}X\u{2581}b"
        );
    }

    #[test]
    fn charsmap_parser_rejects_broken_blobs() {
        assert!(CharsMap::parse(&[1, 0, 0]).is_err());
        assert!(CharsMap::parse(&[8, 0, 0, 0, 1, 2, 3, 4]).is_err());
    }
}
