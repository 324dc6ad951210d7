//! Parallel gzip: a layer is cut into fixed-size blocks, each compressed on a
//! worker thread into an independent gzip member; members concatenated in order
//! form one valid gzip stream (RFC 1952 §2.2), so all cores work on one layer.

use std::collections::VecDeque;
use std::io::Read;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use sha2::{Digest, Sha256};

/// Uncompressed bytes per gzip member. 1 MiB costs almost nothing in ratio
/// (measured in shared/notes/crates.md) and bounds memory per block in flight.
pub const BLOCK_SIZE: usize = 1 << 20;

struct Job {
    input: Vec<u8>,
    reply: SyncSender<Vec<u8>>,
}

/// A fixed pool of threads compressing blocks with libdeflate.
pub struct BlockCompressor {
    jobs: Option<SyncSender<Job>>,
    workers: Vec<JoinHandle<()>>,
    threads: usize,
}

impl BlockCompressor {
    /// `level` is libdeflate's, 1..=12 (checked by the command line).
    pub fn new(threads: usize, level: u32) -> BlockCompressor {
        let threads = threads.max(1);
        let (sender, receiver) = sync_channel::<Job>(threads);
        let receiver = Arc::new(Mutex::new(receiver));
        let level = libdeflater::CompressionLvl::new(level as i32)
            .unwrap_or_else(|_| libdeflater::CompressionLvl::default());
        let workers = (0..threads)
            .map(|index| {
                let receiver = Arc::clone(&receiver);
                std::thread::Builder::new()
                    .name(format!("gzip-{index}"))
                    .spawn(move || compress_jobs(&receiver, level))
                    .expect("cannot start a compression thread")
            })
            .collect();
        BlockCompressor {
            jobs: Some(sender),
            workers,
            threads,
        }
    }

    fn submit(&self, input: Vec<u8>) -> Receiver<Vec<u8>> {
        let (reply, result) = sync_channel(1);
        if let Some(jobs) = &self.jobs {
            // A send error means the workers are gone; the receiver then reports
            // the failure when it is read.
            let _ = jobs.send(Job { input, reply });
        }
        result
    }

    /// Blocks in flight at once: enough to keep every worker busy while the
    /// reader fills the next block, few enough to bound memory.
    fn depth(&self) -> usize {
        self.threads * 2
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

fn compress_jobs(receiver: &Mutex<Receiver<Job>>, level: libdeflater::CompressionLvl) {
    let mut compressor = libdeflater::Compressor::new(level);
    loop {
        let job = match receiver.lock() {
            Ok(guard) => match guard.recv() {
                Ok(job) => job,
                Err(_) => return,
            },
            Err(_) => return,
        };
        let mut output = vec![0; compressor.gzip_compress_bound(job.input.len())];
        let written = compressor
            .gzip_compress(&job.input, &mut output)
            .expect("gzip_compress_bound guarantees room");
        output.truncate(written);
        let _ = job.reply.send(output);
    }
}

/// What compressing one layer measured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompressedLayer {
    /// `sha256:` of the uncompressed tar: the layer's diffID.
    pub diff_id: String,
    /// `sha256:` of the gzip stream: the blob digest in the registry.
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
    #[error("the upload of the layer stopped")]
    OutputClosed,
}

/// Reads `reader` to its end, compressing it in parallel and handing each
/// compressed member, in order, to `output`. Digests and sizes are computed in
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
    let mut pending: VecDeque<Receiver<Vec<u8>>> = VecDeque::new();
    let mut drain_one = |pending: &mut VecDeque<Receiver<Vec<u8>>>| -> Result<(), CompressError> {
        if let Some(result) = pending.pop_front() {
            let member = result.recv().map_err(|_| CompressError::WorkerGone)?;
            digest.update(&member);
            size += member.len() as u64;
            output(member)?;
        }
        Ok(())
    };
    loop {
        let block = read_block(reader).map_err(CompressError::Read)?;
        let last = block.len() < BLOCK_SIZE;
        // An empty layer still needs one (empty) gzip member to be a valid blob.
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

/// Reads up to `BLOCK_SIZE` bytes; shorter only at the end of the input.
fn read_block(reader: &mut dyn Read) -> std::io::Result<Vec<u8>> {
    let mut block = Vec::with_capacity(BLOCK_SIZE);
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

    #[test]
    fn members_concatenate_to_the_exact_input_with_matching_digests() {
        let pool = BlockCompressor::new(3, 6);
        for size in [
            0,
            1,
            BLOCK_SIZE - 1,
            BLOCK_SIZE,
            BLOCK_SIZE + 1,
            5 * BLOCK_SIZE + 12345,
        ] {
            let input = sample(size);
            let mut compressed = Vec::new();
            let result = compress_layer(&pool, &mut input.as_slice(), |member| {
                compressed.extend_from_slice(&member);
                Ok(())
            })
            .unwrap();
            assert_eq!(gunzip_all(&compressed), input, "size {size}");
            assert_eq!(result.diff_id, sha256(&input));
            assert_eq!(result.digest, sha256(&compressed));
            assert_eq!(result.size, compressed.len() as u64);
            assert_eq!(result.uncompressed_size, size as u64);
        }
    }

    #[test]
    fn output_is_deterministic_across_thread_counts() {
        let input = sample(3 * BLOCK_SIZE + 7);
        let digests: Vec<String> = [1, 2, 4]
            .into_iter()
            .map(|threads| {
                let pool = BlockCompressor::new(threads, 6);
                compress_layer(&pool, &mut input.as_slice(), |_| Ok(()))
                    .unwrap()
                    .digest
            })
            .collect();
        assert!(
            digests.windows(2).all(|pair| pair[0] == pair[1]),
            "{digests:?}"
        );
    }

    #[test]
    fn a_closed_output_stops_compression() {
        let pool = BlockCompressor::new(2, 1);
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
