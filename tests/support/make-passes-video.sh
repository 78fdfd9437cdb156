#!/usr/bin/env bash
# Makes the live-camera tests' video from labelled plate photos: each photo
# becomes one vehicle pass (the car moving through the frame for 1-2 s, a pan
# and a zoom over the photo, its plate kept in view), with 1 s of empty road
# (a still, flat dark-grey frame, no plate, nothing moving) before, between
# and after the passes. Writes OUT.mp4 and, beside it, OUT.truth: one line per
# pass, in order, `start_s end_s PLATE` (the pass's first frame and the end of
# its last frame, in seconds from the start of the video).
#
# usage: tests/support/make-passes-video.sh OUT.mp4 PHOTO_DIR N [options]
#   PHOTO_DIR         *.jpg, each with NAME.txt beside it (tab-separated
#                     `file x y w h PLATE`); the first N by name are used.
#   --codec h264|h265 H.264 High with B-frames (default) or H.265 Main.
#   --fps F           frames per second (default 30).
#   --size WxH        frame size (default 1920x1080).
#   --bitrate KBPS    cap the bitrate as an IP camera does (VBV: at most
#                     KBPS kbit/s, a buffer of a quarter second, so no
#                     keyframe is a burst bigger than that); default: no cap.
set -euo pipefail

me="make-passes-video"
die() { echo "$me: $*" >&2; exit 2; }
usage() { sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

codec=h264 fps=30 size=1920x1080 bitrate=""
args=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --codec) [[ $# -ge 2 ]] || die "--codec needs a value"; codec="$2"; shift 2 ;;
        --fps) [[ $# -ge 2 ]] || die "--fps needs a value"; fps="$2"; shift 2 ;;
        --size) [[ $# -ge 2 ]] || die "--size needs a value"; size="$2"; shift 2 ;;
        --bitrate) [[ $# -ge 2 ]] || die "--bitrate needs a value"; bitrate="$2"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        -*) die "unknown option '$1' (try --help)" ;;
        *) args+=("$1"); shift ;;
    esac
done
[[ ${#args[@]} -eq 3 ]] || { usage >&2; exit 2; }
out="${args[0]}" dir="${args[1]}" n="${args[2]}"

[[ "$n" =~ ^[1-9][0-9]*$ ]] || die "N must be a positive whole number, not '$n'"
[[ "$fps" =~ ^[1-9][0-9]*$ ]] || die "--fps must be a positive whole number, not '$fps'"
[[ "$size" =~ ^([1-9][0-9]*)x([1-9][0-9]*)$ ]] || die "--size must be WxH, not '$size'"
width="${BASH_REMATCH[1]}" height="${BASH_REMATCH[2]}"
(( width % 2 == 0 && height % 2 == 0 )) || die "--size needs even numbers for yuv420p, not '$size'"
case "$codec" in
    h264) enc=(-c:v libx264 -preset superfast -profile:v high -bf 2 -g "$fps"
               -x264-params "keyint=$fps:min-keyint=$fps:scenecut=0:log-level=error") ;;
    h265) enc=(-c:v libx265 -preset ultrafast -profile:v main -tag:v hvc1
               -x265-params "bframes=2:keyint=$fps:min-keyint=$fps:scenecut=0:log-level=error") ;;
    *) die "--codec must be h264 or h265, not '$codec'" ;;
esac
if [[ -n "$bitrate" ]]; then
    [[ "$bitrate" =~ ^[1-9][0-9]*$ ]] || die "--bitrate must be a positive whole number (kbit/s), not '$bitrate'"
    enc+=(-b:v "${bitrate}k" -maxrate "${bitrate}k" -bufsize "$((bitrate / 4))k")
fi
[[ "$out" == *.* ]] || die "OUT must have an extension (OUT.mp4), not '$out'"
[[ -d "$dir" ]] || die "no folder '$dir'"
command -v ffmpeg >/dev/null || die "ffmpeg is not installed (scripts/setup.sh installs it)"
truth="${out%.*}.truth"

# The first N photos by name (byte order, whatever the locale).
mapfile -t photos < <(find "$dir" -maxdepth 1 -type f -name '*.jpg' -print | LC_ALL=C sort | head -n "$n")
[[ ${#photos[@]} -eq "$n" ]] || die "'$dir' has ${#photos[@]} photos (*.jpg), $n asked for"

road=0x3a3a3a        # the empty road's colour, also the padding around a photo
gap=$fps             # frames of empty road before, between and after passes
inputs=() graph="" labels="" lines=() frame=0 k=0

add_gap() {
    graph+="color=c=$road:s=${width}x${height}:r=$fps:d=1,trim=end_frame=$gap,setsar=1,format=yuv420p[g$k];"
    labels+="[g$k]"
    k=$((k + 1))
    frame=$((frame + gap))
}

add_gap
for i in "${!photos[@]}"; do
    photo="${photos[$i]}"
    label="${photo%.jpg}.txt"
    [[ -f "$label" ]] || die "'$photo' has no label file '$label'"
    IFS=$'\t' read -r _ px py pw ph plate _ < "$label" || true
    [[ "$px" =~ ^[0-9]+$ && "$py" =~ ^[0-9]+$ && "$pw" =~ ^[0-9]+$ && "$ph" =~ ^[0-9]+$ && -n "$plate" ]] \
        || die "'$label' is not 'file<TAB>x<TAB>y<TAB>w<TAB>h<TAB>PLATE'"
    [[ "$plate" =~ ^[A-Za-z0-9-]+$ ]] || die "'$label' has a plate with odd characters"
    dims="$(ffprobe -v error -select_streams v:0 -show_entries stream=width,height -of csv=p=0:s=x "$photo")" \
        || die "ffprobe cannot read '$photo'"
    [[ "$dims" =~ ^([0-9]+)x([0-9]+)$ ]] || die "ffprobe gives no size for '$photo'"
    iw="${BASH_REMATCH[1]}" ih="${BASH_REMATCH[2]}"

    # 1 to 2 s per pass, varied (cars drive at different speeds), same every run.
    d=$(( fps + fps * ((i * 7) % 11) / 10 ))
    # The plate's centre on the photo fitted (scaled, padded) into the frame,
    # as a fraction of the frame.
    read -r cx cy < <(awk -v W="$width" -v H="$height" -v iw="$iw" -v ih="$ih" \
        -v x="$px" -v y="$py" -v w="$pw" -v h="$ph" 'BEGIN {
            s = (W / iw < H / ih) ? W / iw : H / ih
            printf "%.5f %.5f\n", ((W - iw * s) / 2 + (x + w / 2) * s) / W, ((H - ih * s) / 2 + (y + h / 2) * s) / H
        }')
    # The camera's view: zoom from 1.15 to 1.6 (the car comes closer) while the
    # plate moves from 70 % to 30 % of the view's width and from 40 % to 60 %
    # of its height (the car drives through the frame); the view stays on the
    # photo, so the plate never leaves it. `on` counts this pass's frames.
    p="(on/$((d - 1)))"
    zoom="1.15+0.45*$p"
    xs="clip($cx*iw-(0.7-0.4*$p)*iw/zoom\\,0\\,iw-iw/zoom)"
    ys="clip($cy*ih-(0.4+0.2*$p)*ih/zoom\\,0\\,ih-ih/zoom)"
    inputs+=(-i "$photo")
    graph+="[$i:v]scale=$width:$height:force_original_aspect_ratio=decrease:out_range=tv,"
    graph+="pad=$width:$height:(ow-iw)/2:(oh-ih)/2:color=$road,setsar=1,format=yuv420p,"
    graph+="zoompan=z=$zoom:x=$xs:y=$ys:d=$d:s=${width}x${height}:fps=$fps,setsar=1[p$k];"
    labels+="[p$k]"
    k=$((k + 1))
    lines+=("$(awk -v a="$frame" -v b="$((frame + d))" -v f="$fps" -v t="$plate" 'BEGIN { printf "%.3f %.3f %s\n", a / f, b / f, t }')")
    frame=$((frame + d))
    add_gap
done
graph+="${labels}concat=n=$k:v=1:a=0,fps=$fps[v]"

tmp="${out%.*}.partial.$$"
trap 'rm -f "$tmp"' EXIT
ffmpeg -hide_banner -loglevel error -nostdin -y "${inputs[@]}" -filter_complex "$graph" \
    -map '[v]' -frames:v "$frame" -pix_fmt yuv420p "${enc[@]}" -an -f mp4 "$tmp"
mv -f "$tmp" "$out"
printf '%s\n' "${lines[@]}" > "$truth"
echo "$me: $out ($codec, ${width}x${height}, $fps fps, ${#photos[@]} passes, $frame frames) and $truth" >&2
