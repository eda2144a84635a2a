//! Reading GGUF files (llama.cpp's single-file format): the header, the metadata, the tensor
//! table, and each tensor's data dequantized to f32.
//!
//! A GGUF file is the magic `GGUF`, a version (2 or 3), the tensor and metadata counts, the
//! metadata (typed key–value pairs: numbers, strings, arrays), the tensor table (name,
//! dimensions with the fastest-varying first, type, offset), padding to `general.alignment`
//! (32 by default), then the tensors' data. Everything is little-endian. Every read is checked
//! against the file's length, so a truncated or corrupt file is an error naming what was being
//! read, never a panic.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// The file's first four bytes.
const MAGIC: &[u8; 4] = b"GGUF";
/// The alignment of the data section and of each tensor when the file does not say.
const DEFAULT_ALIGNMENT: u64 = 32;

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Any unsigned integer type.
    U64(u64),
    /// Any signed integer type.
    I64(i64),
    /// `FLOAT32` or `FLOAT64`.
    F64(f64),
    /// `BOOL`.
    Bool(bool),
    /// `STRING` (UTF-8; invalid bytes replaced).
    Str(String),
    /// `ARRAY` of any one type.
    Array(Vec<Value>),
}

impl Value {
    /// The value as an unsigned integer, when it is a non-negative integer.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U64(v) => Some(v),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as a float, when it is a number.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F64(v) => Some(v),
            Value::U64(v) => Some(v as f64),
            Value::I64(v) => Some(v as f64),
            _ => None,
        }
    }

    /// The value as a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// The tensor types the workbench reads, with ggml's numbering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TensorType {
    /// 32-bit floats.
    F32,
    /// IEEE half floats.
    F16,
    /// bfloat16.
    Bf16,
    /// Blocks of 32: an f16 scale and 32 signed bytes.
    Q8_0,
    /// Blocks of 32: an f16 scale and 32 four-bit values offset by 8.
    Q4_0,
    /// Blocks of 32: an f16 scale, an f16 minimum and 32 four-bit values.
    Q4_1,
    /// Super-blocks of 256: f16 scale and minimum, eight 6-bit sub-scales and minima, four-bit
    /// values.
    Q4K,
    /// As `Q4_K` with a fifth bit per value.
    Q5K,
    /// Super-blocks of 256: sixteen 8-bit sub-scales, an f16 scale, six-bit values offset by 32.
    Q6K,
}

impl TensorType {
    fn from_id(id: u32) -> Option<TensorType> {
        Some(match id {
            0 => TensorType::F32,
            1 => TensorType::F16,
            2 => TensorType::Q4_0,
            3 => TensorType::Q4_1,
            8 => TensorType::Q8_0,
            12 => TensorType::Q4K,
            13 => TensorType::Q5K,
            14 => TensorType::Q6K,
            30 => TensorType::Bf16,
            _ => return None,
        })
    }

    /// (values per block, bytes per block).
    fn block(self) -> (u64, u64) {
        match self {
            TensorType::F32 => (1, 4),
            TensorType::F16 | TensorType::Bf16 => (1, 2),
            TensorType::Q8_0 => (32, 34),
            TensorType::Q4_0 => (32, 18),
            TensorType::Q4_1 => (32, 20),
            TensorType::Q4K => (256, 144),
            TensorType::Q5K => (256, 176),
            TensorType::Q6K => (256, 210),
        }
    }
}

/// ggml's name of a tensor type id, for messages.
fn type_name(id: u32) -> String {
    let names = [
        "F32", "F16", "Q4_0", "Q4_1", "Q4_2", "Q4_3", "Q5_0", "Q5_1", "Q8_0", "Q8_1", "Q2_K",
        "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K", "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ4_NL",
        "IQ3_S", "IQ2_S", "IQ4_XS", "I8", "I16", "I32", "I64", "F64", "IQ1_M", "BF16",
    ];
    names
        .get(id as usize)
        .map_or_else(|| format!("type {id}"), |n| format!("{n} (type {id})"))
}

/// One entry of the tensor table.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    /// Its name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// Dimensions, fastest-varying first (GGUF's order: `[columns, rows]` for a matrix).
    pub dims: Vec<u64>,
    /// Its type.
    pub kind: TensorType,
    /// Where its data starts, from the start of the file.
    pub start: u64,
    /// Its data's length in bytes.
    pub bytes: u64,
}

impl TensorInfo {
    /// Number of values.
    pub fn len(&self) -> u64 {
        self.dims.iter().product()
    }

    /// Whether it holds no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A GGUF file, read whole.
#[derive(Debug)]
pub struct Gguf {
    path: PathBuf,
    /// The format version.
    pub version: u32,
    /// The metadata, by key.
    pub metadata: BTreeMap<String, Value>,
    /// The tensor table, in file order.
    pub tensors: Vec<TensorInfo>,
    /// The whole file, or (from [`Gguf::open_metadata`]) only its start.
    data: Vec<u8>,
    /// Whether `data` is the whole file, so tensors can be read.
    complete: bool,
}

/// A cursor over the file's bytes that names what it was reading when the bytes ran out.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    path: &'a Path,
}

impl<'a> Reader<'a> {
    fn bad(&self, message: String) -> Error {
        Error::invalid(format!(
            "`{}` is not a GGUF file the workbench can read: {message}\n\nhint: check that the \
             download finished (compare its size or checksum with the source), or convert the \
             model again with llama.cpp's `convert_hf_to_gguf.py`",
            self.path.display()
        ))
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        match end {
            Some(end) => {
                let out = &self.bytes[self.at..end];
                self.at = end;
                Ok(out)
            }
            None => Err(self.bad(format!(
                "it ends at byte {} while reading {what} ({n} more bytes needed); the file is \
                 truncated",
                self.bytes.len()
            ))),
        }
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn string(&mut self, what: &str) -> Result<String> {
        let n = self.u64(what)?;
        let n = usize::try_from(n).map_err(|_| self.bad(format!("{what} is {n} bytes long")))?;
        Ok(String::from_utf8_lossy(self.take(n, what)?).into_owned())
    }

    fn value(&mut self, kind: u32, what: &str, depth: usize) -> Result<Value> {
        let b = |r: &mut Self, n| r.take(n, what).map(<[u8]>::to_vec);
        Ok(match kind {
            0 => Value::U64(b(self, 1)?[0] as u64),
            1 => Value::I64(b(self, 1)?[0] as i8 as i64),
            2 => {
                let x = b(self, 2)?;
                Value::U64(u16::from_le_bytes([x[0], x[1]]) as u64)
            }
            3 => {
                let x = b(self, 2)?;
                Value::I64(i16::from_le_bytes([x[0], x[1]]) as i64)
            }
            4 => Value::U64(self.u32(what)? as u64),
            5 => Value::I64(self.u32(what)? as i32 as i64),
            6 => Value::F64(f32::from_bits(self.u32(what)?) as f64),
            7 => Value::Bool(b(self, 1)?[0] != 0),
            8 => Value::Str(self.string(what)?),
            9 if depth < 4 => {
                let inner = self.u32(what)?;
                let n = self.u64(what)?;
                // Each element takes at least a byte: a count past the file's end is corrupt.
                if n > (self.bytes.len() - self.at) as u64 {
                    return Err(self.bad(format!(
                        "{what} claims {n} elements, more than the file holds"
                    )));
                }
                let mut items = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    items.push(self.value(inner, what, depth + 1)?);
                }
                Value::Array(items)
            }
            10 => Value::U64(self.u64(what)?),
            11 => Value::I64(self.u64(what)? as i64),
            12 => Value::F64(f64::from_bits(self.u64(what)?)),
            other => {
                return Err(self.bad(format!("{what} has the unknown value type {other}")));
            }
        })
    }
}

impl Gguf {
    /// Reads and checks the file at `path`: its header, metadata and tensor table, and that
    /// every tensor's data lies inside the file.
    pub fn open(path: &Path) -> Result<Gguf> {
        let data = std::fs::read(path).map_err(|e| Error::Read {
            path: path.to_path_buf(),
            source: e,
        })?;
        let len = data.len() as u64;
        Gguf::parse(path, data, len)
    }

    /// Reads only the header, metadata and tensor table (what a tokenizer or a file type needs),
    /// not the tensors' data: a start of the file big enough to hold them, checked against the
    /// file's length. [`Gguf::dequantize`] then refuses to read.
    pub fn open_metadata(path: &Path) -> Result<Gguf> {
        Gguf::open_start(path, 16 << 20)
    }

    /// [`Gguf::open_metadata`] reading `first` bytes first, four times more at each retry.
    fn open_start(path: &Path, first: u64) -> Result<Gguf> {
        use std::io::Read;
        let read_error = |e| Error::Read {
            path: path.to_path_buf(),
            source: e,
        };
        let mut file = std::fs::File::open(path).map_err(read_error)?;
        let len = file.metadata().map_err(read_error)?.len();
        let mut data = Vec::new();
        let mut want = first.max(1);
        loop {
            let more = want.min(len) - data.len() as u64;
            (&mut file)
                .take(more)
                .read_to_end(&mut data)
                .map_err(read_error)?;
            match Gguf::parse(path, data.clone(), len) {
                // Too short a start reads as a truncated file: read more, up to the whole file.
                Err(_) if (data.len() as u64) < len => want = want.saturating_mul(4),
                result => return result,
            }
        }
    }

    /// Parses `data`, the first bytes of a file of `len` bytes (all of them when equal).
    fn parse(path: &Path, data: Vec<u8>, len: u64) -> Result<Gguf> {
        let mut r = Reader {
            bytes: &data,
            at: 0,
            path,
        };
        let magic = r.take(4, "the magic number")?;
        if magic != MAGIC {
            return Err(r.bad(format!(
                "it starts with {:?}, not `GGUF`",
                String::from_utf8_lossy(magic)
            )));
        }
        let version = r.u32("the version")?;
        if !(2..=3).contains(&version) {
            return Err(r.bad(format!(
                "it is GGUF version {version}; the workbench reads versions 2 and 3"
            )));
        }
        let n_tensors = r.u64("the tensor count")?;
        let n_kv = r.u64("the metadata count")?;
        let mut metadata = BTreeMap::new();
        for i in 0..n_kv {
            let key = r.string(&format!("metadata key {i}"))?;
            let kind = r.u32(&format!("the type of `{key}`"))?;
            let value = r.value(kind, &format!("`{key}`"), 0)?;
            metadata.insert(key, value);
        }
        let alignment = match metadata.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(v) => match v.as_u64() {
                Some(a) if a > 0 && a.is_power_of_two() => a,
                _ => return Err(r.bad(format!("`general.alignment` is {v:?}"))),
            },
        };
        let mut infos = Vec::new();
        for i in 0..n_tensors {
            let name = r.string(&format!("the name of tensor {i}"))?;
            let n_dims = r.u32(&format!("the rank of `{name}`"))?;
            if n_dims > 4 {
                return Err(r.bad(format!(
                    "`{name}` has {n_dims} dimensions; ggml has at most 4"
                )));
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for _ in 0..n_dims {
                dims.push(r.u64(&format!("the dimensions of `{name}`"))?);
            }
            let id = r.u32(&format!("the type of `{name}`"))?;
            let offset = r.u64(&format!("the offset of `{name}`"))?;
            infos.push((name, dims, id, offset));
        }
        let data_start = (r.at as u64).div_ceil(alignment) * alignment;
        let mut tensors = Vec::with_capacity(infos.len());
        for (name, dims, id, offset) in infos {
            let Some(kind) = TensorType::from_id(id) else {
                return Err(r.bad(format!(
                    "the tensor `{name}` is {}, which the workbench does not read (it reads F32, \
                     F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q5_K and Q6_K)",
                    type_name(id)
                )));
            };
            let values = dims
                .iter()
                .try_fold(1u64, |a, &d| a.checked_mul(d))
                .ok_or_else(|| r.bad(format!("the dimensions of `{name}` overflow")))?;
            let (per_block, block_bytes) = kind.block();
            if values % per_block != 0 {
                return Err(r.bad(format!(
                    "`{name}` holds {values} values, not a whole number of {}'s blocks of \
                     {per_block}",
                    type_name(id)
                )));
            }
            let bytes = (values / per_block).checked_mul(block_bytes);
            let start = data_start.checked_add(offset);
            let end = start.and_then(|s| s.checked_add(bytes?));
            match (start, end, bytes) {
                (Some(start), Some(end), Some(bytes)) if end <= len => tensors.push(TensorInfo {
                    name,
                    dims,
                    kind,
                    start,
                    bytes,
                }),
                (_, _, None) => {
                    return Err(r.bad(format!(
                        "the dimensions of the tensor `{name}` ({dims:?}, {}) give more than \
                         2^64 bytes; the file's header is damaged",
                        type_name(id)
                    )));
                }
                (_, _, Some(bytes)) => {
                    return Err(r.bad(format!(
                        "the tensor `{name}` ({dims:?}, {}) needs {bytes} bytes at offset \
                         {offset} of the data, past the end of the file ({len} bytes); the \
                         file is truncated, or its size disagrees with its shape",
                        type_name(id)
                    )));
                }
            }
        }
        Ok(Gguf {
            path: path.to_path_buf(),
            version,
            metadata,
            tensors,
            complete: data.len() as u64 == len,
            data,
        })
    }

    /// The tensor named `name`.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// A tensor's values as f32, in GGUF's order (the first dimension fastest, so a matrix
    /// `[columns, rows]` comes row by row).
    pub fn dequantize(&self, t: &TensorInfo) -> Result<Vec<f32>> {
        if !self.complete {
            return Err(Error::invalid(format!(
                "`{}` was opened for its metadata only; its tensors were not read",
                self.path.display()
            )));
        }
        let bytes = &self.data[t.start as usize..(t.start + t.bytes) as usize];
        let half = |b: &[u8]| half::f16::from_le_bytes([b[0], b[1]]).to_f32();
        let n = t.len() as usize;
        let mut out = Vec::with_capacity(n);
        match t.kind {
            TensorType::F32 => out.extend(
                bytes
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            ),
            TensorType::F16 => out.extend(bytes.chunks_exact(2).map(half)),
            TensorType::Bf16 => out.extend(
                bytes
                    .chunks_exact(2)
                    .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()),
            ),
            TensorType::Q8_0 => {
                for block in bytes.chunks_exact(34) {
                    let d = half(&block[..2]);
                    out.extend(block[2..].iter().map(|&q| d * q as i8 as f32));
                }
            }
            TensorType::Q4_0 | TensorType::Q4_1 => {
                let q4_1 = t.kind == TensorType::Q4_1;
                let head = if q4_1 { 4 } else { 2 };
                for block in bytes.chunks_exact(head + 16) {
                    let d = half(&block[..2]);
                    let (m, offset) = if q4_1 {
                        (half(&block[2..4]), 0.0)
                    } else {
                        (0.0, 8.0)
                    };
                    let qs = &block[head..];
                    // The low nibbles are the block's first 16 values, the high ones the rest.
                    out.extend(qs.iter().map(|&q| ((q & 0x0F) as f32 - offset) * d + m));
                    out.extend(qs.iter().map(|&q| ((q >> 4) as f32 - offset) * d + m));
                }
            }
            TensorType::Q4K | TensorType::Q5K => {
                let q5 = t.kind == TensorType::Q5K;
                for block in bytes.chunks_exact(if q5 { 176 } else { 144 }) {
                    let (d, dmin) = (half(&block[..2]), half(&block[2..4]));
                    let scales = &block[4..16];
                    let (qh, qs) = if q5 {
                        (&block[16..48], &block[48..])
                    } else {
                        (&[][..], &block[16..])
                    };
                    // Each 64 values share 32 bytes: low nibbles first, then high nibbles,
                    // each half with its own sub-scale and minimum.
                    for (j, q) in qs.chunks_exact(32).enumerate() {
                        for (half_index, shift) in [(0, 0u8), (1, 4u8)] {
                            let (sc, m) = k_scale_min(2 * j + half_index, scales);
                            let (d1, m1) = (d * sc as f32, dmin * m as f32);
                            let bit = 1u8 << (2 * j + half_index);
                            out.extend(q.iter().enumerate().map(|(l, &b)| {
                                let high = if q5 && qh[l] & bit != 0 { 16.0 } else { 0.0 };
                                d1 * (((b >> shift) & 0x0F) as f32 + high) - m1
                            }));
                        }
                    }
                }
            }
            TensorType::Q6K => {
                for block in bytes.chunks_exact(210) {
                    let (ql, qh) = (&block[..128], &block[128..192]);
                    let scales = &block[192..208];
                    let d = half(&block[208..210]);
                    // Two halves of 128 values; within one, four runs of 32 take their low
                    // four bits from `ql` and their top two from one bit pair of `qh`.
                    for n in 0..2 {
                        let (ql, qh) = (&ql[64 * n..64 * n + 64], &qh[32 * n..32 * n + 32]);
                        let sc = &scales[8 * n..8 * n + 8];
                        for run in 0..4 {
                            let low = &ql[32 * (run % 2)..32 * (run % 2) + 32];
                            let shift = if run < 2 { 0 } else { 4 };
                            out.extend((0..32).map(|l| {
                                let q =
                                    ((low[l] >> shift) & 0x0F) | (((qh[l] >> (2 * run)) & 3) << 4);
                                let s = sc[l / 16 + 2 * run] as i8 as f32;
                                d * s * (q as i32 - 32) as f32
                            }));
                        }
                    }
                }
            }
        }
        if out.len() != n {
            return Err(Error::invalid(format!(
                "`{}`: the tensor `{}` gave {} values for a shape of {n}",
                self.path.display(),
                t.name,
                out.len()
            )));
        }
        Ok(out)
    }
}

/// The 6-bit scale and minimum of sub-block `j` of a `Q4_K`/`Q5_K` super-block, packed in 12
/// bytes: the first four pairs in the low six bits of bytes 0–7, the last four split between
/// bytes 8–11 (low four bits) and the top two bits of bytes 0–7.
fn k_scale_min(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A GGUF file in memory, written field by field as the format lays it out.
    #[derive(Default)]
    struct Writer {
        kv: Vec<u8>,
        n_kv: u64,
        infos: Vec<u8>,
        data: Vec<u8>,
        n_tensors: u64,
    }

    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend((s.len() as u64).to_le_bytes());
        out.extend(s.as_bytes());
    }

    impl Writer {
        fn kv_u32(&mut self, key: &str, v: u32) {
            string(&mut self.kv, key);
            self.kv.extend(4u32.to_le_bytes());
            self.kv.extend(v.to_le_bytes());
            self.n_kv += 1;
        }

        fn kv_str(&mut self, key: &str, v: &str) {
            string(&mut self.kv, key);
            self.kv.extend(8u32.to_le_bytes());
            string(&mut self.kv, v);
            self.n_kv += 1;
        }

        fn kv_strs(&mut self, key: &str, v: &[&str]) {
            string(&mut self.kv, key);
            self.kv.extend(9u32.to_le_bytes());
            self.kv.extend(8u32.to_le_bytes());
            self.kv.extend((v.len() as u64).to_le_bytes());
            for s in v {
                string(&mut self.kv, s);
            }
            self.n_kv += 1;
        }

        fn tensor(&mut self, name: &str, dims: &[u64], kind: u32, bytes: &[u8]) {
            while !self.data.len().is_multiple_of(32) {
                self.data.push(0);
            }
            string(&mut self.infos, name);
            self.infos.extend((dims.len() as u32).to_le_bytes());
            for d in dims {
                self.infos.extend(d.to_le_bytes());
            }
            self.infos.extend(kind.to_le_bytes());
            self.infos.extend((self.data.len() as u64).to_le_bytes());
            self.data.extend(bytes);
            self.n_tensors += 1;
        }

        fn bytes(&self, version: u32) -> Vec<u8> {
            let mut out = b"GGUF".to_vec();
            out.extend(version.to_le_bytes());
            out.extend(self.n_tensors.to_le_bytes());
            out.extend(self.n_kv.to_le_bytes());
            out.extend(&self.kv);
            out.extend(&self.infos);
            while !out.len().is_multiple_of(32) {
                out.push(0);
            }
            out.extend(&self.data);
            out
        }
    }

    fn f16(x: f32) -> [u8; 2] {
        half::f16::from_f32(x).to_le_bytes()
    }

    fn sample() -> Writer {
        let mut w = Writer::default();
        w.kv_str("general.architecture", "llama");
        w.kv_u32("llama.block_count", 2);
        w.kv_strs("tokenizer.ggml.tokens", &["<s>", "a", "b"]);
        let f32s: Vec<u8> = [1.0f32, -2.5, 3.25, 0.0, 7.0, -0.5]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        w.tensor("f32", &[3, 2], 0, &f32s);
        let f16s: Vec<u8> = [0.5f32, -1.0].iter().flat_map(|&x| f16(x)).collect();
        w.tensor("f16", &[2], 1, &f16s);
        let bf16s: Vec<u8> = [1.5f32, -4.0]
            .iter()
            .flat_map(|&x| half::bf16::from_f32(x).to_le_bytes())
            .collect();
        w.tensor("bf16", &[2], 30, &bf16s);
        // Q8_0: scale 0.5, values −16..16.
        let mut q8 = f16(0.5).to_vec();
        q8.extend((0..32).map(|i| (i as i8 - 16) as u8));
        w.tensor("q8", &[32], 8, &q8);
        // Q4_0: scale 2, nibbles j (low) and 15 − j (high).
        let mut q4 = f16(2.0).to_vec();
        q4.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
        w.tensor("q4_0", &[32], 2, &q4);
        // Q4_1: scale 0.25, minimum −1.
        let mut q41 = f16(0.25).to_vec();
        q41.extend(f16(-1.0));
        q41.extend((0..16u8).map(|j| j | (j << 4)));
        w.tensor("q4_1", &[32], 3, &q41);
        w
    }

    fn parse(bytes: Vec<u8>) -> Result<Gguf> {
        let len = bytes.len() as u64;
        Gguf::parse(Path::new("model.gguf"), bytes, len)
    }

    /// Opened for its metadata, a file gives the same header and tensor table without reading
    /// the tensors, and refuses to dequantize; a truncated one is still refused.
    #[test]
    fn the_metadata_alone_reads_like_the_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.gguf");
        let mut w = sample();
        // A tensor whose data far outweighs the table before it.
        w.tensor("big", &[4096], 0, &[0u8; 16384]);
        let bytes = w.bytes(3);
        std::fs::write(&path, &bytes).unwrap();
        let (whole, head) = (
            Gguf::open(&path).unwrap(),
            Gguf::open_metadata(&path).unwrap(),
        );
        assert_eq!(head.metadata, whole.metadata);
        assert_eq!(head.tensors, whole.tensors);
        let t = &whole.tensors[0];
        assert!(whole.dequantize(t).is_ok());
        // The sample is far below the first read's 16 MiB: all of it was read, so it is whole.
        assert!(head.dequantize(t).is_ok());
        // From a start of 64 bytes, grown until the table fits, short of the tensors' data.
        let part = Gguf::open_start(&path, 64).unwrap();
        assert_eq!(part.tensors, whole.tensors);
        assert!(
            part.data.len() < bytes.len(),
            "{} of {}",
            part.data.len(),
            bytes.len()
        );
        let e = part.dequantize(t).unwrap_err().to_string();
        assert!(e.contains("metadata only"), "{e}");
        std::fs::write(&path, &bytes[..bytes.len() - 8]).unwrap();
        let e = Gguf::open_metadata(&path).unwrap_err().to_string();
        assert!(e.contains("truncated"), "{e}");
    }

    #[test]
    fn metadata_and_every_tensor_type_read_back() {
        let g = parse(sample().bytes(3)).unwrap();
        assert_eq!(g.version, 3);
        assert_eq!(g.metadata["general.architecture"].as_str(), Some("llama"));
        assert_eq!(g.metadata["llama.block_count"].as_u64(), Some(2));
        assert_eq!(
            g.metadata["tokenizer.ggml.tokens"],
            Value::Array(vec![
                Value::Str("<s>".into()),
                Value::Str("a".into()),
                Value::Str("b".into())
            ])
        );
        let read = |name: &str| g.dequantize(g.tensor(name).unwrap()).unwrap();
        assert_eq!(read("f32"), [1.0, -2.5, 3.25, 0.0, 7.0, -0.5]);
        assert_eq!(g.tensor("f32").unwrap().dims, [3, 2]);
        assert_eq!(read("f16"), [0.5, -1.0]);
        assert_eq!(read("bf16"), [1.5, -4.0]);
        let q8: Vec<f32> = (0..32).map(|i| 0.5 * (i as f32 - 16.0)).collect();
        assert_eq!(read("q8"), q8);
        let mut q4: Vec<f32> = (0..16).map(|j| 2.0 * (j as f32 - 8.0)).collect();
        q4.extend((0..16).map(|j| 2.0 * ((15 - j) as f32 - 8.0)));
        assert_eq!(read("q4_0"), q4);
        let q41: Vec<f32> = (0..32).map(|i| 0.25 * (i % 16) as f32 - 1.0).collect();
        assert_eq!(read("q4_1"), q41);
        assert_eq!(parse(sample().bytes(2)).unwrap().version, 2);
    }

    #[test]
    fn broken_files_are_refused_with_what_is_wrong() {
        let good = sample().bytes(3);
        let err = |bytes: Vec<u8>| parse(bytes).err().unwrap().to_string();

        let e = err(good[..good.len() - 10].to_vec());
        assert!(e.contains("past the end of the file"), "{e}");
        let e = err(good[..40].to_vec());
        assert!(e.contains("truncated"), "{e}");

        let mut bad = good.clone();
        bad[..4].copy_from_slice(b"GGML");
        let e = err(bad);
        assert!(e.contains("not `GGUF`"), "{e}");

        let e = err(sample().bytes(7));
        assert!(e.contains("version 7") && e.contains("2 and 3"), "{e}");

        let mut w = sample();
        w.tensor("k", &[256], 16, &[0u8; 66]);
        let e = err(w.bytes(3));
        assert!(e.contains("`k` is IQ2_XXS (type 16)"), "{e}");

        // A shape that asks for more data than the file holds.
        let mut w = Writer::default();
        w.tensor("big", &[64, 64], 0, &[0u8; 16]);
        let e = err(w.bytes(3));
        assert!(
            e.contains("`big`") && e.contains("disagrees with its shape"),
            "{e}"
        );

        // A shape that is not a whole number of blocks.
        let mut w = Writer::default();
        w.tensor("odd", &[33], 8, &[0u8; 68]);
        let e = err(w.bytes(3));
        assert!(e.contains("not a whole number"), "{e}");
        assert!(e.contains("model.gguf"), "{e}");
    }
}
