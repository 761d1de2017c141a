//! Catalog documents kept deflated, in chunks compressed one by one, so that a change
//! re-compresses one chunk and the document is still one gzip stream.
//!
//! Each chunk is raw deflate ended by a full flush (byte-aligned, no back-reference into an
//! earlier chunk, no final block), as `pigz` joins its blocks: chunks concatenated are one
//! deflate stream, closed by an empty final block and the gzip trailer (the CRC-32 of the whole
//! combined from the chunks' own). A gzip client is sent those bytes as they are; any other
//! client gets them inflated on the way out. Memory holds only the compressed text (a 2 MB
//! page of resources is about 0.1 MB).

use std::{io, sync::Arc};

use axum::body::Bytes;
use flate2::{Compress, Compression, Crc, Decompress, FlushCompress, FlushDecompress};
use sha2::{Digest, Sha256};

/// zlib's fastest level: this YAML is repetitive enough that it already shrinks ~15x, and a
/// cold page (every resource on it compressed) stays a few milliseconds.
const LEVEL: u32 = 1;

/// Part of a document: its deflated text, CRC-32 and length (for the gzip trailer), and a
/// digest of the text (for the document's ETag).
pub struct Chunk {
    deflated: Bytes,
    crc: Crc,
    len: usize,
    digest: [u8; 32],
}

impl Chunk {
    /// Its uncompressed length.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Its compressed length.
    pub fn deflated_len(&self) -> usize {
        self.deflated.len()
    }
}

/// Compresses chunks, reusing its compressor and output buffer from one chunk to the next.
pub struct Deflater {
    compress: Compress,
    scratch: Vec<u8>,
}

impl Default for Deflater {
    fn default() -> Self {
        Self {
            compress: Compress::new(Compression::new(LEVEL), false),
            scratch: Vec::new(),
        }
    }
}

impl Deflater {
    pub fn chunk(&mut self, text: &[u8]) -> Chunk {
        let mut crc = Crc::new();
        crc.update(text);
        Chunk {
            deflated: self.deflate(text),
            crc,
            len: text.len(),
            digest: Sha256::digest(text).into(),
        }
    }

    fn deflate(&mut self, text: &[u8]) -> Bytes {
        if text.is_empty() {
            // No block at all is a valid (empty) piece of the stream.
            return Bytes::new();
        }
        self.compress.reset();
        self.scratch.clear();
        self.scratch.reserve(text.len() / 4 + 64);
        loop {
            let done = self.compress.total_in() as usize;
            self.compress
                .compress_vec(&text[done..], &mut self.scratch, FlushCompress::Full)
                .expect("deflate accepts any input into a buffer with room");
            // zlib's rule: the flush is complete once a call leaves output space unused.
            if self.compress.total_in() as usize == text.len()
                && self.scratch.len() < self.scratch.capacity()
            {
                break;
            }
            self.scratch.reserve(self.scratch.capacity().max(64));
        }
        // Copied out so the chunk does not keep the buffer's spare capacity.
        Bytes::copy_from_slice(&self.scratch)
    }
}

/// A served document: its chunks and its ETag.
#[derive(Clone)]
pub struct Document {
    /// A strong ETag (quoted) of the uncompressed text.
    pub etag: String,
    chunks: Arc<[Arc<Chunk>]>,
}

impl Document {
    /// A document of one chunk; its ETag is [`etag_of`] its text.
    pub fn whole(text: &str) -> Self {
        let chunk = Deflater::default().chunk(text.as_bytes());
        Self {
            etag: tag(&chunk.digest),
            chunks: Arc::from([Arc::new(chunk)]),
        }
    }

    /// The document the chunks make in this order; its ETag is a digest of their digests, so
    /// it changes with any chunk's text and is the same in every process.
    pub fn of_chunks(chunks: Vec<Arc<Chunk>>) -> Self {
        let mut d = Sha256::new();
        for c in &chunks {
            d.update(c.digest);
        }
        Self {
            etag: tag(&d.finalize().into()),
            chunks: chunks.into(),
        }
    }

    /// Its uncompressed length.
    pub fn len(&self) -> usize {
        self.chunks.iter().map(|c| c.len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Its length as gzip.
    pub fn gzip_len(&self) -> usize {
        HEADER.len() + self.chunks.iter().map(|c| c.deflated.len()).sum::<usize>() + 2 + 8
    }

    /// The document as one gzip member (RFC 1952), joined from the chunks without compressing.
    pub fn gzip(&self) -> Bytes {
        let mut out = Vec::with_capacity(self.gzip_len());
        out.extend_from_slice(&HEADER);
        let mut crc = Crc::new();
        for c in self.chunks.iter() {
            out.extend_from_slice(&c.deflated);
            crc.combine(&c.crc);
        }
        // An empty final block with fixed codes: BFINAL=1, BTYPE=01, end-of-block.
        out.extend_from_slice(&[0x03, 0x00]);
        out.extend_from_slice(&crc.sum().to_le_bytes());
        out.extend_from_slice(&crc.amount().to_le_bytes());
        out.into()
    }

    /// The document's text, inflated from the chunks.
    pub fn identity(&self) -> io::Result<Bytes> {
        let len = self.len();
        // A little room past the text: inflate may want space to read the last empty blocks.
        let mut out = Vec::with_capacity(len + 64);
        let mut inflate = Decompress::new(false);
        for c in self.chunks.iter() {
            let mut input = &c.deflated[..];
            while !input.is_empty() {
                let before = inflate.total_in();
                inflate
                    .decompress_vec(input, &mut out, FlushDecompress::Sync)
                    .map_err(io::Error::other)?;
                let used = (inflate.total_in() - before) as usize;
                if used == 0 {
                    return Err(io::Error::other("a catalog chunk does not inflate"));
                }
                input = &input[used..];
            }
        }
        if out.len() != len {
            return Err(io::Error::other(
                "a catalog chunk inflates to the wrong length",
            ));
        }
        Ok(out.into())
    }
}

/// gzip's header: deflate, no name or time, unknown OS.
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

fn tag(digest: &[u8; 32]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(34);
    s.push('"');
    for b in &digest[..16] {
        let _ = write!(s, "{b:02x}");
    }
    s.push('"');
    s
}

/// A strong ETag: a digest of the text, so every replica gives the same bytes the same tag.
pub fn etag_of(text: &str) -> String {
    tag(&Sha256::digest(text.as_bytes()).into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn doc(texts: &[String]) -> Document {
        let mut d = Deflater::default();
        Document::of_chunks(
            texts
                .iter()
                .map(|t| Arc::new(d.chunk(t.as_bytes())))
                .collect(),
        )
    }

    fn gunzip(b: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        // `GzDecoder` reads one member and checks its CRC and length.
        flate2::read::GzDecoder::new(b)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn chunks_join_into_one_gzip_stream_and_inflate_to_their_text() {
        let big: String = (0..5000)
            .map(|i| format!("- name: db-{i}\n  owner: team-{}\n", i % 7))
            .collect();
        let texts = vec![
            big.clone(),
            String::new(),
            "tail: ünïcode\n".to_owned(),
            String::new(),
            big[..777].to_owned(),
        ];
        let d = doc(&texts);
        let whole = texts.concat();
        assert_eq!(d.len(), whole.len());
        assert_eq!(gunzip(&d.gzip()), whole.as_bytes());
        assert_eq!(&d.identity().unwrap()[..], whole.as_bytes());
        assert_eq!(d.gzip().len(), d.gzip_len());
        assert!(d.gzip_len() * 4 < whole.len(), "{} bytes", d.gzip_len());
    }

    #[test]
    fn an_empty_document_is_a_valid_empty_gzip() {
        for d in [
            doc(&[]),
            doc(&[String::new(), String::new()]),
            Document::whole(""),
        ] {
            assert_eq!(gunzip(&d.gzip()), b"");
            assert!(d.identity().unwrap().is_empty());
        }
    }

    #[test]
    fn etags_follow_the_text_and_its_chunking() {
        let a = doc(&["one\n".into(), "two\n".into()]);
        assert_eq!(a.etag, doc(&["one\n".into(), "two\n".into()]).etag);
        assert_ne!(a.etag, doc(&["one\n".into(), "twO\n".into()]).etag);
        assert_ne!(a.etag, doc(&["two\n".into(), "one\n".into()]).etag);
        let w = Document::whole("one\n");
        assert_eq!(w.etag, etag_of("one\n"));
        assert!(w.etag.starts_with('"') && w.etag.ends_with('"') && w.etag.len() == 34);
    }
}
