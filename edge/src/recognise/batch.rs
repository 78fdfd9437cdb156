//! Recognising many files on all cores: one [`Recogniser`] per worker thread
//! (single-threaded ONNX Runtime sessions), each doing read → decode →
//! detect → OCR → decide for the next file, so decoding on one core overlaps
//! inference on the other. Results come back in input order through a
//! bounded channel.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use super::{ModelError, PlateRead, RecogniseError, Recogniser, RecogniserOptions, StageTimes};

/// The outcome for one file.
#[derive(Debug)]
pub struct FileResult {
    pub index: usize,
    pub path: PathBuf,
    pub result: Result<(Vec<PlateRead>, StageTimes), RecogniseError>,
}

/// Worker count that fits this machine.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Opens `workers` recognisers (each with `options`) and reads `paths` with
/// them, calling `on_result` in input order. Fails only if the models do
/// not open; per-file failures arrive in their [`FileResult`].
pub fn recognise_files(
    models_dir: &Path,
    options: &RecogniserOptions,
    workers: usize,
    paths: &[PathBuf],
    on_result: impl FnMut(FileResult),
) -> Result<(), ModelError> {
    let workers = workers.clamp(1, paths.len().max(1));
    let recognisers = (0..workers)
        .map(|_| Recogniser::open(models_dir, options.clone()))
        .collect::<Result<Vec<_>, _>>()?;
    run_with(recognisers, paths, on_result);
    Ok(())
}

/// As [`recognise_files`] with recognisers already open (one thread each).
pub fn run_with(
    recognisers: Vec<Recogniser>,
    paths: &[PathBuf],
    mut on_result: impl FnMut(FileResult),
) {
    let next = AtomicUsize::new(0);
    let (tx, rx) = mpsc::sync_channel::<FileResult>(recognisers.len() * 2);
    std::thread::scope(|s| {
        for mut rec in recognisers {
            let tx = tx.clone();
            let next = &next;
            s.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(path) = paths.get(i) else { break };
                let result = rec.recognise_file(path);
                let r = FileResult {
                    index: i,
                    path: path.clone(),
                    result,
                };
                if tx.send(r).is_err() {
                    break;
                }
            });
        }
        drop(tx);
        let mut pending = BTreeMap::new();
        let mut want = 0;
        for r in rx {
            pending.insert(r.index, r);
            while let Some(r) = pending.remove(&want) {
                on_result(r);
                want += 1;
            }
        }
        for (_, r) in pending {
            on_result(r);
        }
    });
}
