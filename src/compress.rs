//! Parallel compression: a layer is cut into fixed-size blocks, each compressed
//! on a worker thread into an independent gzip member or zstd frame; members
//! (RFC 1952 §2.2) or frames (RFC 8878 §3.1) concatenated in order form one
//! valid stream, so all cores work on one layer.

use std::collections::VecDeque;
use std::io::Read;
use std::ops::RangeInclusive;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use sha2::{Digest, Sha256};

/// Uncompressed bytes per gzip member or zstd frame. 1 MiB costs almost
/// nothing in ratio (measured in shared/notes/crates.md) and bounds memory per
/// block in flight.
pub const BLOCK_SIZE: usize = 1 << 20;

/// The default gzip level. Level 1 is ISA-L's igzip level 1 (built with the
/// default `isal` feature), levels 2..=12 are libdeflate's. Measured on the
/// bench image's 697 MB shared-library layer, one core, 1 MiB members:
/// igzip 1 533 MB/s at ratio 0.380, libdeflate 1 226 MB/s at 0.360,
/// libdeflate 2 169 MB/s at 0.342. The registry of an idpbuilder cluster is
/// local, so speed wins; each higher level is slower and smaller.
pub const GZIP_DEFAULT_LEVEL: u32 = 1;
/// 1 (igzip, or libdeflate 1 without the `isal` feature), then libdeflate's.
pub const GZIP_LEVELS: RangeInclusive<u32> = 1..=12;
/// zstd's own default level.
pub const ZSTD_DEFAULT_LEVEL: u32 = 3;
/// zstd's regular levels (20..=22 need far more memory per worker).
pub const ZSTD_LEVELS: RangeInclusive<u32> = 1..=19;

/// The compression of the layers we compress ourselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Compression {
    #[default]
    Gzip,
    Zstd,
}

impl Compression {
    pub fn name(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }

    /// The levels `--compression-level` accepts for this algorithm.
    pub fn levels(self) -> RangeInclusive<u32> {
        match self {
            Compression::Gzip => GZIP_LEVELS,
            Compression::Zstd => ZSTD_LEVELS,
        }
    }

    pub fn default_level(self) -> u32 {
        match self {
            Compression::Gzip => GZIP_DEFAULT_LEVEL,
            Compression::Zstd => ZSTD_DEFAULT_LEVEL,
        }
    }
}

type Reply = std::io::Result<Vec<u8>>;

struct Job {
    input: Vec<u8>,
    reply: SyncSender<Reply>,
}

/// Input blocks handed back by the workers for the reader to fill again.
/// Reusing them keeps the allocator out of the loop: with a fresh 1 MiB block
/// per read, glibc spread the churn over one arena per thread and a 3 GiB
/// layer peaked at 74 MiB RSS for ~25 MiB of live buffers.
type SpareBlocks = Arc<Mutex<Vec<Vec<u8>>>>;

/// A fixed pool of threads compressing blocks, each with its own compressor.
pub struct BlockCompressor {
    jobs: Option<SyncSender<Job>>,
    workers: Vec<JoinHandle<()>>,
    threads: usize,
    spare: SpareBlocks,
}

impl BlockCompressor {
    /// `level` lies in `compression.levels()` (checked by the configuration).
    pub fn new(threads: usize, compression: Compression, level: u32) -> BlockCompressor {
        let threads = threads.max(1);
        let (sender, receiver) = sync_channel::<Job>(threads);
        let receiver = Arc::new(Mutex::new(receiver));
        let spare = SpareBlocks::default();
        // Every block in flight, plus the one the reader fills.
        let keep = blocks_in_flight(threads) + 1;
        let workers = (0..threads)
            .map(|index| {
                let receiver = Arc::clone(&receiver);
                let spare = Arc::clone(&spare);
                std::thread::Builder::new()
                    .name(format!("{}-{index}", compression.name()))
                    .spawn(move || compress_jobs(&receiver, &spare, keep, compression, level))
                    .expect("cannot start a compression thread")
            })
            .collect();
        BlockCompressor {
            jobs: Some(sender),
            workers,
            threads,
            spare,
        }
    }

    fn submit(&self, input: Vec<u8>) -> Receiver<Reply> {
        let (reply, result) = sync_channel(1);
        if let Some(jobs) = &self.jobs {
            // A send error means the workers are gone; the receiver then reports
            // the failure when it is read.
            let _ = jobs.send(Job { input, reply });
        }
        result
    }

    /// An empty block with room for `BLOCK_SIZE` bytes, reused when one is spare.
    fn empty_block(&self) -> Vec<u8> {
        let reused = self.spare.lock().ok().and_then(|mut spare| spare.pop());
        let mut block = reused.unwrap_or_else(|| Vec::with_capacity(BLOCK_SIZE));
        block.clear();
        block
    }

    fn depth(&self) -> usize {
        blocks_in_flight(self.threads)
    }
}

impl Drop for BlockCompressor {
    fn drop(&mut self) {
        self.jobs.take();
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

/// Blocks in flight at once: enough to keep every worker busy while the
/// reader fills the next block, few enough to bound memory.
fn blocks_in_flight(threads: usize) -> usize {
    threads * 2
}

/// One worker's compressor, kept for all the blocks it compresses.
enum Engine {
    /// ISA-L keeps no state between blocks worth keeping.
    #[cfg(feature = "isal")]
    Igzip,
    Gzip(libdeflater::Compressor),
    Zstd(zstd::bulk::Compressor<'static>),
}

impl Engine {
    fn new(compression: Compression, level: u32) -> std::io::Result<Engine> {
        Ok(match compression {
            #[cfg(feature = "isal")]
            Compression::Gzip if level == 1 => Engine::Igzip,
            Compression::Gzip => {
                let level = libdeflater::CompressionLvl::new(level as i32)
                    .unwrap_or_else(|_| libdeflater::CompressionLvl::default());
                Engine::Gzip(libdeflater::Compressor::new(level))
            }
            Compression::Zstd => Engine::Zstd(zstd::bulk::Compressor::new(level as i32)?),
        })
    }

    /// One block as one gzip member or one zstd frame, written into `scratch`
    /// (the worker's, reused) and copied out at its exact length: a member
    /// waits in the upload channel, where room for 1 MiB holding 0.4 MiB of
    /// gzip would more than double what the channel holds.
    fn compress(&mut self, input: &[u8], scratch: &mut Vec<u8>) -> Reply {
        let written = match self {
            #[cfg(feature = "isal")]
            Engine::Igzip => {
                scratch.resize(igzip_bound(input.len()), 0);
                isal::compress_into(
                    input,
                    scratch,
                    isal::CompressionLevel::One,
                    isal::Codec::Gzip,
                )
                .map_err(std::io::Error::other)?
            }
            Engine::Gzip(compressor) => {
                scratch.resize(compressor.gzip_compress_bound(input.len()), 0);
                compressor
                    .gzip_compress(input, scratch)
                    .expect("gzip_compress_bound guarantees room")
            }
            Engine::Zstd(compressor) => {
                scratch.clear();
                scratch.reserve(zstd::zstd_safe::compress_bound(input.len()));
                compressor.compress_to_buffer(input, scratch)?
            }
        };
        Ok(scratch[..written].to_vec())
    }
}

/// Room a stateless igzip member needs at worst: ISA-L falls back to stored
/// blocks (5 bytes of header per 65535 bytes) when the output would not fit
/// otherwise, plus the gzip header and trailer (18 bytes); with less room it
/// fails instead.
#[cfg(feature = "isal")]
fn igzip_bound(input: usize) -> usize {
    input + 5 * (input / 65535 + 1) + 64
}

fn compress_jobs(
    receiver: &Mutex<Receiver<Job>>,
    spare: &SpareBlocks,
    keep: usize,
    compression: Compression,
    level: u32,
) {
    let mut engine = Engine::new(compression, level);
    let mut scratch = Vec::new();
    loop {
        let job = match receiver.lock() {
            Ok(guard) => match guard.recv() {
                Ok(job) => job,
                Err(_) => return,
            },
            Err(_) => return,
        };
        let output = match &mut engine {
            Ok(engine) => engine.compress(&job.input, &mut scratch),
            Err(error) => Err(std::io::Error::new(error.kind(), error.to_string())),
        };
        let _ = job.reply.send(output);
        if let Ok(mut spare) = spare.lock() {
            if spare.len() < keep {
                spare.push(job.input);
            }
        }
    }
}

/// What compressing one layer measured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompressedLayer {
    /// `sha256:` of the uncompressed tar: the layer's diffID.
    pub diff_id: String,
    /// `sha256:` of the compressed stream: the blob digest in the registry.
    pub digest: String,
    pub size: u64,
    pub uncompressed_size: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum CompressError {
    #[error("reading the layer from the export failed")]
    Read(#[source] std::io::Error),
    #[error("a compression thread stopped")]
    WorkerGone,
    #[error("compressing a block failed")]
    Compress(#[source] std::io::Error),
    #[error("the upload of the layer stopped")]
    OutputClosed,
}

/// Reads `reader` to its end, compressing it in parallel and handing each
/// compressed member or frame, in order, to `output`. Digests and sizes are computed in
/// the same pass.
pub fn compress_layer(
    pool: &BlockCompressor,
    reader: &mut dyn Read,
    mut output: impl FnMut(Vec<u8>) -> Result<(), CompressError>,
) -> Result<CompressedLayer, CompressError> {
    let mut diff_id = Sha256::new();
    let mut digest = Sha256::new();
    let mut size = 0u64;
    let mut uncompressed_size = 0u64;
    let mut pending: VecDeque<Receiver<Reply>> = VecDeque::new();
    let mut drain_one = |pending: &mut VecDeque<Receiver<Reply>>| -> Result<(), CompressError> {
        if let Some(result) = pending.pop_front() {
            let member = result
                .recv()
                .map_err(|_| CompressError::WorkerGone)?
                .map_err(CompressError::Compress)?;
            digest.update(&member);
            size += member.len() as u64;
            output(member)?;
        }
        Ok(())
    };
    loop {
        let block = read_block(reader, pool.empty_block()).map_err(CompressError::Read)?;
        let last = block.len() < BLOCK_SIZE;
        // An empty layer still needs one (empty) member or frame to be a valid blob.
        if !block.is_empty() || uncompressed_size == 0 {
            diff_id.update(&block);
            uncompressed_size += block.len() as u64;
            pending.push_back(pool.submit(block));
        }
        while pending.len() >= pool.depth() || (last && !pending.is_empty()) {
            drain_one(&mut pending)?;
        }
        if last {
            break;
        }
    }
    Ok(CompressedLayer {
        diff_id: format!("sha256:{}", hex::encode(diff_id.finalize())),
        digest: format!("sha256:{}", hex::encode(digest.finalize())),
        size,
        uncompressed_size,
    })
}

/// Reads up to `BLOCK_SIZE` bytes into `block`; shorter only at the end of the input.
fn read_block(reader: &mut dyn Read, mut block: Vec<u8>) -> std::io::Result<Vec<u8>> {
    reader.take(BLOCK_SIZE as u64).read_to_end(&mut block)?;
    Ok(block)
}

/// Hashes a layer without compressing it (its blob is already in the registry).
pub fn hash_layer(reader: &mut dyn Read) -> std::io::Result<(String, u64)> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; 256 * 1024];
    let mut total = 0u64;
    loop {
        let read = reader.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
        total += read as u64;
    }
    Ok((format!("sha256:{}", hex::encode(hasher.finalize())), total))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gunzip_all(data: &[u8]) -> Vec<u8> {
        use std::io::Read as _;
        let mut decoder = flate2::read::MultiGzDecoder::new(data);
        let mut output = Vec::new();
        decoder.read_to_end(&mut output).unwrap();
        output
    }

    fn sha256(data: &[u8]) -> String {
        format!("sha256:{}", hex::encode(Sha256::digest(data)))
    }

    /// Deterministic, partly compressible input of any size.
    fn sample(size: usize) -> Vec<u8> {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        (0..size)
            .map(|index| {
                if index % 3 == 0 {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                } else {
                    (index % 251) as u8
                }
            })
            .collect()
    }

    fn unzstd_all(data: &[u8]) -> Vec<u8> {
        use std::io::Read as _;
        // The streaming decoder reads frame after frame until the input ends.
        let mut decoder = zstd::stream::read::Decoder::new(data).unwrap();
        let mut output = Vec::new();
        decoder.read_to_end(&mut output).unwrap();
        output
    }

    const SIZES: [usize; 6] = [
        0,
        1,
        BLOCK_SIZE - 1,
        BLOCK_SIZE,
        BLOCK_SIZE + 1,
        5 * BLOCK_SIZE + 12345,
    ];

    fn round_trips(compression: Compression, decompress: fn(&[u8]) -> Vec<u8>) {
        let pool = BlockCompressor::new(3, compression, compression.default_level());
        for size in SIZES {
            let input = sample(size);
            let mut compressed = Vec::new();
            let mut blocks = 0;
            let result = compress_layer(&pool, &mut input.as_slice(), |member| {
                compressed.extend_from_slice(&member);
                blocks += 1;
                Ok(())
            })
            .unwrap();
            assert_eq!(decompress(&compressed), input, "size {size}");
            assert_eq!(blocks, size.div_ceil(BLOCK_SIZE).max(1), "size {size}");
            assert_eq!(result.diff_id, sha256(&input));
            assert_eq!(result.digest, sha256(&compressed));
            assert_eq!(result.size, compressed.len() as u64);
            assert_eq!(result.uncompressed_size, size as u64);
        }
    }

    #[test]
    fn members_concatenate_to_the_exact_input_with_matching_digests() {
        round_trips(Compression::Gzip, gunzip_all);
    }

    #[test]
    fn every_gzip_level_round_trips_compressible_and_random_input() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let random: Vec<u8> = (0..2 * BLOCK_SIZE + 999)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect();
        for level in Compression::Gzip.levels() {
            let pool = BlockCompressor::new(2, Compression::Gzip, level);
            for input in [sample(BLOCK_SIZE + 3), random.clone()] {
                let mut compressed = Vec::new();
                let result = compress_layer(&pool, &mut input.as_slice(), |member| {
                    compressed.extend_from_slice(&member);
                    Ok(())
                })
                .unwrap();
                assert_eq!(gunzip_all(&compressed), input, "level {level}");
                assert_eq!(result.digest, sha256(&compressed), "level {level}");
            }
        }
    }

    #[test]
    fn zstd_frames_concatenate_to_the_exact_input_with_matching_digests() {
        round_trips(Compression::Zstd, unzstd_all);
    }

    #[test]
    fn every_zstd_block_is_a_frame_of_its_own() {
        let pool = BlockCompressor::new(2, Compression::Zstd, 1);
        let input = sample(2 * BLOCK_SIZE + 5);
        let mut frames = Vec::new();
        compress_layer(&pool, &mut input.as_slice(), |frame| {
            frames.push(frame);
            Ok(())
        })
        .unwrap();
        assert_eq!(frames.len(), 3);
        for (frame, block) in frames.iter().zip(input.chunks(BLOCK_SIZE)) {
            assert!(frame.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]), "zstd magic");
            assert_eq!(zstd::bulk::decompress(frame, BLOCK_SIZE).unwrap(), block);
        }
    }

    #[test]
    fn output_is_deterministic_across_thread_counts() {
        let input = sample(3 * BLOCK_SIZE + 7);
        for compression in [Compression::Gzip, Compression::Zstd] {
            let digests: Vec<String> = [1, 2, 4]
                .into_iter()
                .map(|threads| {
                    let pool =
                        BlockCompressor::new(threads, compression, compression.default_level());
                    compress_layer(&pool, &mut input.as_slice(), |_| Ok(()))
                        .unwrap()
                        .digest
                })
                .collect();
            assert!(
                digests.windows(2).all(|pair| pair[0] == pair[1]),
                "{compression:?}: {digests:?}"
            );
        }
    }

    #[test]
    fn levels_and_defaults_depend_on_the_algorithm() {
        assert_eq!(Compression::default(), Compression::Gzip);
        assert_eq!(Compression::Gzip.levels(), 1..=12);
        assert_eq!(Compression::Zstd.levels(), 1..=19);
        for compression in [Compression::Gzip, Compression::Zstd] {
            assert!(compression.levels().contains(&compression.default_level()));
        }
    }

    #[test]
    fn a_closed_output_stops_compression() {
        let pool = BlockCompressor::new(2, Compression::Gzip, 1);
        let input = sample(4 * BLOCK_SIZE);
        let error = compress_layer(&pool, &mut input.as_slice(), |_| {
            Err(CompressError::OutputClosed)
        })
        .unwrap_err();
        assert!(matches!(error, CompressError::OutputClosed));
    }

    #[test]
    fn hash_layer_matches_sha256() {
        let input = sample(700_000);
        assert_eq!(
            hash_layer(&mut input.as_slice()).unwrap(),
            (sha256(&input), input.len() as u64)
        );
    }
}
