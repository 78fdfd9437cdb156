# Developer and user recipes. `scripts/setup.sh` installs what these need.

set shell := ["bash", "-euo", "pipefail", "-c"]

# Plate models: the team's copy beside the repo, unless ALPR_MODELS says otherwise.
export ALPR_MODELS := env_var_or_default("ALPR_MODELS", justfile_directory() / "../shared/models")

default:
    @just --list

# The end-to-end tests that run a second time on PostgreSQL (nextest filter).
pg_e2e := "binary(sync) | binary(audit) | binary(console_search) | binary(lawful_access) | binary(holds) | binary(retention) | binary(quiet_logs)"

# Build everything, then run every test (the README's test command calls this):
# all of them on the embedded store, then the end-to-end tests of sync, audit,
# search, holds, retention and quiet logs again with each hub on PostgreSQL. One throwaway
# cluster serves the whole run (the store's contract tests use it too) and is
# deleted at the end, pass or fail (scripts/test-pg.sh).
test:
    cargo build --workspace --bins
    scripts/test-pg.sh run just _test-both

# (Inside `just test`: both runs, every failure reported, either failing fails.)
_test-both:
    #!/usr/bin/env bash
    set -uo pipefail
    status=0
    cargo nextest run --workspace --no-fail-fast || status=$?
    ALPR_TEST_BACKEND=postgres cargo nextest run -p alpr-e2e --no-fail-fast -E '{{pg_e2e}}' || status=$?
    exit "$status"

# The end-to-end tests above on PostgreSQL only (a cluster of their own).
test-pg:
    cargo build --workspace --bins
    scripts/test-pg.sh run env ALPR_TEST_BACKEND=postgres cargo nextest run -p alpr-e2e --no-fail-fast -E '{{pg_e2e}}'

# The gate before every commit: formatting, lints as errors (also of the
# edge's live-camera feature, which needs libclang), tests.
check:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings
    cargo clippy -p alpr-edge --all-targets --features camera -- -D warnings
    cargo build -p alpr-edge --features camera
    just test

# Install the ONNX Runtime library into .runtime/.
ort:
    bash scripts/install-ort.sh

# Install the fast-alpr peer for `alpr-bench edge recognize`.
peer:
    bash scripts/install-peer.sh

# Recognition, system against system with the fast-alpr peer (our thresholds,
# crops and OCR ensemble against its defaults, same models), per labelled
# folder: the US photos and the held-out Brazilian ones (tuned on by nobody),
# each with the difference and its 95 % interval (paired bootstrap); extra
# flags (--json, --threads N, --no-peer) follow.
bench-recognize us=(justfile_directory() / "../shared/data/plates/us") br=(justfile_directory() / "../shared/data/plates/br") *flags="": peer
    cargo build --release -p alpr-bench
    target/release/alpr-bench edge recognize "{{us}}" "{{br}}" {{flags}}

# Which state issued a plate, on the labelled development crops: given,
# right_of_given, top1, top3, ms per crop (docs/state.md).
bench-state dir=(justfile_directory() / "../shared/data/plates/us-states") *flags="":
    cargo build --release -p alpr-bench
    target/release/alpr-bench edge state "{{dir}}" {{flags}}

# Verified, durably stored reads per second at the hub (at most speed, and
# the ack time at a fixed offered rate), beside the machine's own limit:
# the same entries' signatures checked on every core, nothing else.
# Live cameras end to end: N vehicle passes made from the photos, served by
# GStreamer's RTSP server (one per camera), watched by the release edge for
# `duration` seconds (store and video under dir, a real disk).
bench-camera passes="20" cameras="1" duration="600" dir="." *flags="":
    cargo build --release -p alpr-bench -p alpr-edge
    target/release/alpr-bench edge camera --generate {{passes}} --cameras {{cameras}} --duration {{duration}} --dir {{dir}} {{flags}}

bench-ingest edges="100" reads="200000" rate="10000":
    cargo build --release -p alpr-bench
    target/release/alpr-bench hub ingest --edges {{edges}} --reads {{reads}} --rate {{rate}}
    target/release/alpr-bench hub ingest --quic --edges {{edges}} --reads {{reads}} --rate {{rate}}

# argon2id login time through the hub's API (target p99 ≤ 100 ms)
bench-login logins="100":
    cargo build --release -p alpr-bench
    target/release/alpr-bench hub login --logins {{logins}}
# Searches over a store of N signed reads over 13 months with their photos
# (every n-th read's: a year's photos fit no small disk; built once in --dir,
# then reused), each after its durable access record: exact, wildcard,
# OCR-tolerant, canvass; extra flags (--drop-cache, --json) follow.
bench-search reads="1000000" images_every="50" dir="." *flags="":
    cargo build --release -p alpr-bench
    target/release/alpr-bench hub search --reads {{reads}} --images-every {{images_every}} --dir {{dir}} {{flags}}

# A retention purge of N expired reads with real-size photos (20 KB crop, 150 KB
# overview) while 100 edges ingest through all of it: purge_s and ingest_ratio.
bench-retention reads="20000" dir=".":
    cargo build --release -p alpr-bench
    target/release/alpr-bench hub retention --reads {{reads}} --dir {{dir}}

# Server time of console pages (dashboard; search: exact, wildcard, tolerant,
# canvass) over a store of N signed reads, built once in --dir, then reused.
bench-console reads="1000000" dir=".":
    cargo build --release -p alpr-bench
    target/release/alpr-bench hub console --reads {{reads}} --dir {{dir}}

# A patrol shift's catch-up over an emulated 1 Mbit/s, 100 ms RTT, 2 % loss link;
# extra flags (--json, --rtt-ms, --loss, --rate-bps) follow the count.
bench-catchup reads="20000" *flags="":
    cargo build --release --workspace --bins
    target/release/catchup-bench {{reads}} {{flags}}

# Hotlists: import of a generated 1M-row NCIC extract and its 5,000-change delta
# through the API (hub); an edge's cold start from disk, memory, matching, and the
# delta applied (checked, stored durably, matcher rebuilt) with the swap's peak memory.
bench-hotlist entries="1000000":
    cargo build --release -p alpr-bench
    target/release/alpr-bench hub hotlist --entries {{entries}}
    target/release/alpr-bench edge hotlist --entries {{entries}}

# A change to a 100,000-row list, from the operator's request to delivered on, and
# applied by the edge's own code on, each of N QUIC edges (run by `alpr-bench edge push-edges`).
bench-push edges="1000":
    cargo build --release -p alpr-bench
    target/release/alpr-bench hub push --edges {{edges}}

# The image lane: reads with 8 KiB images (plate crops) over 1 Mbit/s, 600 ms RTT, 2 % loss.
bench-catchup-images reads="300" *flags="":
    cargo build --release --workspace --bins
    target/release/catchup-bench {{reads}} --images --rtt-ms 600 {{flags}}

# The hub's peak memory (VmHWM) while many edges push images as fast as they can.
bench-images edges="100" kib="256":
    cargo build --workspace --bins
    target/debug/image-flood --edges {{edges}} --image-kib {{kib}} --per-stream 1

# The newcomer's demo: a hub and two edges on loopback, photos as cameras.
# `just demo /other/photos` replays another folder; `just demo --serve` keeps
# the hub and its web console up at the end, until Ctrl-C.
demo *args:
    cargo build --workspace --bins
    ALPR_DEMO_PHOTOS="${ALPR_DEMO_PHOTOS:-{{justfile_directory() / "../shared/data/plates/us"}}}" \
        target/debug/demo --models "$ALPR_MODELS" {{args}}

# Ingest over QUIC on redb (one hub) and on PostgreSQL (two `hub serve`
# processes sharing one database), in the same run. Without url, the bench
# starts a throwaway PostgreSQL cluster; with it, a fresh database is made
# in that server for the run and dropped after.
# Flags pass on (e.g. `--batch 64 --in-flight 1`: less queued per edge,
# so the acknowledgement time is the hub's, not the queue's).
bench-ingest-pg edges="100" reads="200000" hubs="2" url="" *flags="":
    cargo build --release -p alpr-bench -p alpr-hub
    target/release/alpr-bench hub ingest --quic --backend redb,postgres --hubs {{hubs}} --edges {{edges}} --reads {{reads}} {{ if url == "" { "" } else { "--database-url " + url } }} {{flags}}

# Searches over N signed reads in PostgreSQL (the database url names is
# built once if empty, then reused; without url, a throwaway cluster built
# for the run), then the same over redb in dir.
bench-search-pg reads="10000000" url="" dir=".":
    cargo build --release -p alpr-bench
    target/release/alpr-bench hub search --backend postgres --reads {{reads}} --dir {{dir}} {{ if url == "" { "" } else { "--database-url " + url } }}
    target/release/alpr-bench hub search --backend redb --reads {{reads}} --dir {{dir}}
