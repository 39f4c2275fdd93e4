//! Raw samples packed into blobs (migrations/0009_packed_samples.sql).
//!
//! A row per sample and subject cost the sampler three B-tree inserts per container per tick,
//! one of them scattered over a page per subject. Packed, a sampler commit appends one
//! `meter_block` row holding every sample of the tick; once a minute the compactor moves whole
//! minutes into one `meter_chunk` row per subject and minute (and writes their 1-minute
//! rollups from the same rows).
//!
//! Format: a version byte, then per sample — in a block, the subject (length, UTF-8 bytes) —
//! [`RawSample`]'s fields as zigzag LEB128 varints, pressure as `0` (none) or value + 1.

use super::account::Usage;

const VERSION: u8 = 1;

/// One raw sample as stored: the usage of the interval `(ts_ms - dt_ms, ts_ms]`, plus gauges at
/// `ts_ms`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RawSample {
    pub ts_ms: i64,
    pub dt_ms: i64,
    pub cpu_usec: i64,
    pub throttled_usec: i64,
    pub io_rbytes: i64,
    pub io_wbytes: i64,
    pub io_rios: i64,
    pub io_wios: i64,
    pub mem_byte_s: i64,
    pub mem_bytes: i64,
    pub mem_peak: i64,
    pub pids: i64,
    pub pids_peak: i64,
    /// PSI `some avg10` of cpu, memory and io (hundredths of a percent), where the kernel
    /// reports it.
    pub psi: [Option<u32>; 3],
}

fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl RawSample {
    pub fn new(
        ts_ms: i64,
        u: &Usage,
        mem_bytes: u64,
        pids: u64,
        psi: [Option<u32>; 3],
    ) -> RawSample {
        RawSample {
            ts_ms,
            dt_ms: i(u.duration_ns / 1_000_000),
            cpu_usec: i(u.cpu_usec),
            throttled_usec: i(u.throttled_usec),
            io_rbytes: i(u.io_rbytes),
            io_wbytes: i(u.io_wbytes),
            io_rios: i(u.io_rios),
            io_wios: i(u.io_wios),
            mem_byte_s: i(u.memory_byte_seconds),
            mem_bytes: i(mem_bytes),
            mem_peak: i(u.memory_peak),
            pids: i(pids),
            pids_peak: i(u.pids_peak),
            psi,
        }
    }

    /// The minute this sample belongs to: that of its last millisecond, so a sample exactly on
    /// a boundary closes the earlier minute.
    pub fn minute(&self) -> i64 {
        (self.ts_ms - 1).div_euclid(60_000) * 60_000
    }

    /// The integer fields in their stored order ([`Reader::sample`] reads them back).
    fn ints(&self) -> [i64; 13] {
        [
            self.ts_ms,
            self.dt_ms,
            self.cpu_usec,
            self.throttled_usec,
            self.io_rbytes,
            self.io_wbytes,
            self.io_rios,
            self.io_wios,
            self.mem_byte_s,
            self.mem_bytes,
            self.mem_peak,
            self.pids,
            self.pids_peak,
        ]
    }
}

fn put(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn put_sample(out: &mut Vec<u8>, s: &RawSample) {
    for v in s.ints() {
        put(out, v);
    }
    for p in s.psi {
        put(out, p.map_or(0, |v| i64::from(v) + 1));
    }
}

/// A blob that does not decode: written by a newer version, or damaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a packed sample blob does not decode (format version or length)")]
pub struct Corrupt;

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Result<Self, Corrupt> {
        match bytes.split_first() {
            Some((&VERSION, rest)) => Ok(Reader { bytes: rest }),
            _ => Err(Corrupt),
        }
    }

    fn int(&mut self) -> Result<i64, Corrupt> {
        let mut z = 0u64;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = self.bytes.split_first().ok_or(Corrupt)?;
            self.bytes = rest;
            z |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(((z >> 1) as i64) ^ -((z & 1) as i64));
            }
        }
        Err(Corrupt)
    }

    fn subject(&mut self) -> Result<&'a str, Corrupt> {
        let n = usize::try_from(self.int()?).map_err(|_| Corrupt)?;
        if n > self.bytes.len() {
            return Err(Corrupt);
        }
        let (s, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        std::str::from_utf8(s).map_err(|_| Corrupt)
    }

    fn psi(&mut self) -> Result<Option<u32>, Corrupt> {
        match self.int()? {
            0 => Ok(None),
            raw => u32::try_from(raw - 1).map(Some).map_err(|_| Corrupt),
        }
    }

    /// The fields in [`RawSample::ints`] order (a struct literal evaluates in source order).
    fn sample(&mut self) -> Result<RawSample, Corrupt> {
        Ok(RawSample {
            ts_ms: self.int()?,
            dt_ms: self.int()?,
            cpu_usec: self.int()?,
            throttled_usec: self.int()?,
            io_rbytes: self.int()?,
            io_wbytes: self.int()?,
            io_rios: self.int()?,
            io_wios: self.int()?,
            mem_byte_s: self.int()?,
            mem_bytes: self.int()?,
            mem_peak: self.int()?,
            pids: self.int()?,
            pids_peak: self.int()?,
            psi: [self.psi()?, self.psi()?, self.psi()?],
        })
    }
}

/// The samples of one sampler commit, any subjects: one `meter_block` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub bytes: Vec<u8>,
    pub samples: usize,
    pub first_ms: i64,
    pub last_ms: i64,
}

impl Default for Block {
    fn default() -> Self {
        Block {
            bytes: vec![VERSION],
            samples: 0,
            first_ms: i64::MAX,
            last_ms: i64::MIN,
        }
    }
}

impl Block {
    pub fn with_capacity(samples: usize) -> Block {
        let mut bytes = Vec::with_capacity(1 + samples * 48);
        bytes.push(VERSION);
        Block {
            bytes,
            ..Block::default()
        }
    }

    pub fn push(&mut self, subject: &str, s: &RawSample) {
        put(&mut self.bytes, subject.len() as i64);
        self.bytes.extend_from_slice(subject.as_bytes());
        put_sample(&mut self.bytes, s);
        self.samples += 1;
        self.first_ms = self.first_ms.min(s.ts_ms);
        self.last_ms = self.last_ms.max(s.ts_ms);
    }

    pub fn is_empty(&self) -> bool {
        self.samples == 0
    }
}

/// Calls `f` with every (subject, sample) of a block, in the order they were pushed.
pub fn decode_block<'a>(
    bytes: &'a [u8],
    mut f: impl FnMut(&'a str, RawSample),
) -> Result<(), Corrupt> {
    let mut r = Reader::new(bytes)?;
    while !r.bytes.is_empty() {
        let subject = r.subject()?;
        f(subject, r.sample()?);
    }
    Ok(())
}

/// One subject's samples of one minute: a `meter_chunk` row.
pub fn encode_chunk(samples: &[RawSample]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + samples.len() * 40);
    out.push(VERSION);
    for s in samples {
        put_sample(&mut out, s);
    }
    out
}

/// Appends the samples of a chunk to `out`.
pub fn decode_chunk(bytes: &[u8], out: &mut Vec<RawSample>) -> Result<(), Corrupt> {
    let mut r = Reader::new(bytes)?;
    while !r.bytes.is_empty() {
        out.push(r.sample()?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(ts_ms: i64, k: i64) -> RawSample {
        RawSample {
            ts_ms,
            dt_ms: 1000,
            cpu_usec: k,
            throttled_usec: k / 2,
            io_rbytes: i64::MAX,
            io_wbytes: 0,
            io_rios: 1,
            io_wios: 127,
            mem_byte_s: 128,
            mem_bytes: 1 << 40,
            mem_peak: 1 << 41,
            pids: 3,
            pids_peak: 9,
            psi: [None, Some(0), Some(u32::MAX - 1)],
        }
    }

    #[test]
    fn blocks_and_chunks_round_trip() {
        let mut b = Block::default();
        let rows = [
            ("c:a", sample(1_800_000_000_000, 5)),
            ("t:team-ü", sample(1_800_000_001_000, -7)),
            ("host", sample(-3, 0)),
        ];
        for (s, r) in &rows {
            b.push(s, r);
        }
        assert_eq!(
            (b.samples, b.first_ms, b.last_ms),
            (3, -3, 1_800_000_001_000)
        );
        let mut back = Vec::new();
        decode_block(&b.bytes, |s, r| back.push((s, r))).unwrap();
        assert_eq!(back, rows);

        let only: Vec<_> = rows.iter().map(|(_, r)| *r).collect();
        let mut out = Vec::new();
        decode_chunk(&encode_chunk(&only), &mut out).unwrap();
        assert_eq!(out, only);
    }

    #[test]
    fn damaged_blobs_are_errors_not_panics() {
        let mut b = Block::default();
        b.push("c:a", &sample(60_000, 1));
        // A cut right after the version byte is a valid empty block.
        for cut in (0..b.bytes.len()).filter(|&c| c != 1) {
            assert_eq!(
                decode_block(&b.bytes[..cut], |_, _| {}),
                Err(Corrupt),
                "cut at {cut}"
            );
        }
        let mut wrong = b.bytes.clone();
        wrong[0] = 2;
        assert_eq!(decode_block(&wrong, |_, _| {}), Err(Corrupt));
        assert_eq!(
            decode_chunk(&[VERSION, 0xff], &mut Vec::new()),
            Err(Corrupt)
        );
    }

    #[test]
    fn a_sample_on_a_boundary_closes_the_earlier_minute() {
        assert_eq!(sample(60_000, 0).minute(), 0);
        assert_eq!(sample(60_001, 0).minute(), 60_000);
        assert_eq!(sample(0, 0).minute(), -60_000);
    }
}
