"""Small test videos, made with the bundled FFmpeg (some of them deliberately hostile).

Frames from `numbered_frames` carry their own index as a grey level (20 + 5 * index), which
survives lossy coding, so a test can tell exactly which source frame a decoded frame is.
`lavfi` (FFmpeg's generator input) is used here, in the test factory only, to make an
audio-only file; the product never accepts it.
"""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import numpy as np

from gradcam3d.ffmpeg import encode_video, run_ffmpeg

GREY_BASE, GREY_STEP = 20, 5
MAX_NUMBERED_FRAMES = (255 - GREY_BASE) // GREY_STEP  # 47


def numbered_frames(*, count: int, width: int = 64, height: int = 48) -> np.ndarray:
    """(count, H, W, 3) uint8 frames, frame i a uniform grey of 20 + 5 * i."""
    if count > MAX_NUMBERED_FRAMES:
        raise ValueError(f"at most {MAX_NUMBERED_FRAMES} numbered frames")
    levels = (GREY_BASE + GREY_STEP * np.arange(count)).astype(np.uint8)
    return np.broadcast_to(levels[:, None, None, None], (count, height, width, 3)).copy()


def frame_numbers(frames: np.ndarray) -> list[int]:
    """The index each numbered frame carries (from its mean grey level)."""
    means = np.asarray(frames, dtype=np.float64).reshape(len(frames), -1).mean(axis=1)
    return [int(round((mean - GREY_BASE) / GREY_STEP)) for mean in means]


def _encode_raw(
    frames: np.ndarray,
    path: Path,
    *,
    fps: float,
    codec_args: list[str],
    input_args: list[str] | None = None,
    filters: str | None = None,
) -> Path:
    count, height, width, _ = frames.shape
    args = [
        "-v",
        "error",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        "-s",
        f"{width}x{height}",
        "-framerate",
        str(fps),
        "-i",
        "pipe:0",
        *(input_args or []),
    ]
    if filters:
        args += ["-vf", filters]
    args += ["-fps_mode", "passthrough", *codec_args, "-y", str(path)]
    run_ffmpeg(args, input_bytes=np.ascontiguousarray(frames).tobytes(), timeout=60)
    return path


def vfr_setpts(*, fast_frames: int, fps: float, slow_interval: float) -> str:
    """Frames 0..fast_frames-1 every 1/fps s, then every `slow_interval` s."""
    return f"settb=1/1000,setpts='if(lt(N,{fast_frames}),N/{fps},{fast_frames}/{fps}+(N-{fast_frames})*{slow_interval})/TB'"


def vfr_times(*, count: int, fast_frames: int, fps: float, slow_interval: float) -> list[float]:
    return [
        n / fps if n < fast_frames else fast_frames / fps + (n - fast_frames) * slow_interval
        for n in range(count)
    ]


def make_mp4(path: Path, *, frames: np.ndarray, fps: float = 25.0) -> Path:
    return encode_video(frames, path, fps=fps)


def make_vfr_mp4(
    path: Path, *, frames: np.ndarray, fps: float = 25.0, fast_frames: int = 20, slow_interval: float = 0.1
) -> Path:
    """H.264 MP4 whose frames come every 1/fps s, then every `slow_interval` s."""
    return _encode_raw(
        frames,
        path,
        fps=fps,
        filters=vfr_setpts(fast_frames=fast_frames, fps=fps, slow_interval=slow_interval),
        codec_args=[
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            "-crf",
            "18",
            "-enc_time_base",
            "1/1000",
            "-video_track_timescale",
            "1000",
        ],
    )


def make_avi(
    path: Path, *, frames: np.ndarray, fps: float = 25.0, codec: str = "mpeg4", vfr: bool = False
) -> Path:
    """AVI (mpeg4 or mjpeg). With vfr=True the timestamps have gaps, which the AVI muxer
    stores as skipped frames: FFmpeg without `-fps_mode passthrough` (and OpenCV's count)
    then see more frames than were written."""
    codec_args = ["-c:v", codec, "-q:v", "2"] + (["-pix_fmt", "yuvj420p"] if codec == "mjpeg" else [])
    filters = vfr_setpts(fast_frames=len(frames) // 2, fps=fps, slow_interval=0.12) if vfr else None
    return _encode_raw(frames, path, fps=fps, filters=filters, codec_args=codec_args)


def make_webm(path: Path, *, frames: np.ndarray, fps: float = 25.0) -> Path:
    return _encode_raw(
        frames,
        path,
        fps=fps,
        codec_args=["-c:v", "libvpx", "-b:v", "1M", "-crf", "4", "-qmin", "0", "-qmax", "8"],
    )


def make_mkv(path: Path, *, frames: np.ndarray, fps: float = 25.0, lossless: bool = False) -> Path:
    """Matroska with H.264, or lossless FFV1 (which also allows odd frame sizes)."""
    codec_args = ["-c:v", "ffv1"] if lossless else ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", "18"]
    return _encode_raw(frames, path, fps=fps, codec_args=codec_args)


def make_text_renamed_mp4(path: Path) -> Path:
    path.write_text("This is a shopping list, not a video.\nmilk\neggs\n" * 20)
    return path


def make_audio_only(path: Path) -> Path:
    """An M4A/MP4 with one AAC sine track and no video."""
    run_ffmpeg(
        ["-v", "error", "-f", "lavfi", "-i", "sine=frequency=440:duration=1", "-c:a", "aac", "-y", str(path)],
        timeout=60,
    )
    return path


def make_zero_frame_mp4(path: Path, *, scratch: Path) -> Path:
    """An MP4 whose header (moov, at the front) lists a video track but whose media data
    was cut off: the demuxer finds the stream and zero readable frames."""
    whole = encode_video(numbered_frames(count=10), scratch, fps=25.0)
    data = whole.read_bytes()
    path.write_bytes(data[: data.index(b"mdat") + 4])
    return path


def make_truncated_mp4(path: Path, *, scratch: Path) -> Path:
    """The first half of an MP4 whose moov is at the end: unreadable."""
    whole = _encode_raw(
        numbered_frames(count=20), scratch, fps=25.0, codec_args=["-c:v", "libx264", "-pix_fmt", "yuv420p"]
    )
    data = whole.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def make_huge_declared_gif(path: Path, *, width: int = 20000, height: int = 20000) -> Path:
    """A 2 kB GIF whose header declares a width x height screen (a decompression bomb)."""
    small = _encode_raw(
        numbered_frames(count=3), path.with_name("small-" + path.name), fps=5.0, codec_args=["-f", "gif"]
    )
    data = bytearray(small.read_bytes())
    data[6:10] = struct.pack("<HH", width, height)
    path.write_bytes(bytes(data))
    return path


def make_hls_playlist(path: Path, *, target: Path) -> Path:
    path.write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:1.6,\n{target.resolve()}\n#EXT-X-ENDLIST\n")
    return path


def make_concat_script(path: Path, *, target: Path) -> Path:
    path.write_text(f"ffconcat version 1.0\nfile '{target.resolve()}'\n")
    return path


def make_png_image(path: Path) -> Path:
    """A still image (opened by FFmpeg's image2/png_pipe demuxers, which are not allowed)."""
    import cv2

    cv2.imwrite(str(path.with_suffix(".png")), numbered_frames(count=1)[0])
    if path.suffix != ".png":
        shutil.move(path.with_suffix(".png"), path)
    return path


def make_three_band_frames(*, count: int, width: int = 128, height: int = 64) -> np.ndarray:
    """Frames with a red left quarter, green middle half and blue right quarter."""
    frame = np.zeros((height, width, 3), dtype=np.uint8)
    quarter = width // 4
    frame[:, :quarter] = (220, 30, 30)
    frame[:, quarter : width - quarter] = (30, 200, 30)
    frame[:, width - quarter :] = (30, 30, 220)
    return np.broadcast_to(frame, (count, height, width, 3)).copy()


# What a hostile file's tags can make FFmpeg print on stderr: a tag NAME containing newlines
# starts new lines at column 0, so these look exactly like FFmpeg's own header, stream,
# mapping, statistics and showinfo lines (and come before the real ones).
FORGED_STDERR_LINES = (
    "  Duration: 00:00:00.10, start: 0.000000, bitrate: 1 kb/s",
    "  Stream #0:0: Video: h264, yuv420p, 10x10, 25 fps, 25 tbr",
    "Stream mapping:",
    "Output #0, null, to 'pipe:':",
    "  Stream #0:0: Video: h264, yuv420p, 10x10, 25 fps, 25 tbr",
    "[Parsed_showinfo_1 @ 0x5] n:   0 pts:  99 pts_time:99 duration:1",
    "[in#0/mov,mp4,m4a,3gp,3g2,mj2 @ 0x5]   Input stream #0:0 (video): 7 packets read (9 bytes); 7 frames decoded",
)


def make_forged_stats_mp4(path: Path, *, count: int = 300, fps: float = 25.0) -> Path:
    """An H.264 MP4 of `count` frames (64x48) whose tags forge FFmpeg's stderr: its title says
    "Input stream #0:0 (video): 7 packets read" and a tag name (written as an MP4 `mdta` key,
    which FFmpeg prints raw) holds the FORGED_STDERR_LINES, claiming 7 frames, 0.1 s, 10x10."""
    frames = np.zeros((count, 48, 64, 3), dtype=np.uint8)
    frames[:, :, :, 0] = (np.arange(count) % 256).astype(np.uint8)[:, None, None]
    key = "x\n" + "\n".join(FORGED_STDERR_LINES) + "\ny"
    return _encode_raw(
        frames,
        path,
        fps=fps,
        codec_args=[
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            "-movflags",
            "use_metadata_tags",
            "-metadata",
            "title=Input stream #0:0 (video): 7 packets read (9 bytes); 7 frames decoded",
            "-metadata",
            f"{key}=forged",
        ],
    )


CODE_BITS = 10  # coded_frames can number up to 1024 frames


def coded_frames(*, count: int, width: int = 96, height: int = 64) -> np.ndarray:
    """(count, H, W, 3) uint8 frames whose index is written as CODE_BITS black/white bars
    (bit j of the index in bar j), readable after lossy coding, plus a bright square moving
    one pixel a frame so that the codec has motion to predict."""
    if count > 2**CODE_BITS:
        raise ValueError(f"at most {2**CODE_BITS} coded frames")
    frames = np.zeros((count, height, width, 3), dtype=np.uint8)
    edges = [round(bit * width / CODE_BITS) for bit in range(CODE_BITS + 1)]
    for index in range(count):
        for bit in range(CODE_BITS):
            if index >> bit & 1:
                frames[index, : height // 2, edges[bit] : edges[bit + 1]] = 230
        x = index % (width - 8)
        frames[index, height - 12 : height - 4, x : x + 8] = (200, 60, 60)
    return frames


def frame_codes(frames: np.ndarray) -> list[int]:
    """The index each coded frame carries (frames may have been resized)."""
    frames = np.asarray(frames, dtype=np.float64)
    height, width = frames.shape[1:3]
    codes = []
    for frame in frames:
        top = frame[: height // 2].mean(axis=(0, 2))  # per column
        bits = [top[int((bit + 0.5) * width / CODE_BITS)] > 115 for bit in range(CODE_BITS)]
        codes.append(sum(1 << bit for bit, on in enumerate(bits) if on))
    return codes


def make_gop_video(
    path: Path,
    *,
    frames: np.ndarray,
    fps: float = 25.0,
    gop: int = 25,
    codec: str = "libx264",
    start_seconds: float = 0.0,
    jitter_seconds: float = 0.0,
) -> Path:
    """A video with a keyframe every `gop` frames (H.264 with B-frames, or VP8), optionally
    starting at `start_seconds` (as MPEG-TS captures and cut files do), and with frame n shown
    `jitter_seconds * sin(1.7 n)` off the regular grid (as phones record; 90 kHz timestamps)."""
    codec_args = ["-c:v", codec, "-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0"]
    codec_args += ["-bf", "3", "-pix_fmt", "yuv420p", "-crf", "20"] if codec == "libx264" else ["-b:v", "1M"]
    if start_seconds:
        codec_args += ["-output_ts_offset", f"{start_seconds}"]
    filters = None
    if jitter_seconds:
        filters = f"settb=1/90000,setpts='(N/{fps}+{jitter_seconds}*sin(N*1.7))/TB'"
        codec_args += ["-enc_time_base", "1/90000", "-video_track_timescale", "90000"]
    return _encode_raw(frames, path, fps=fps, codec_args=codec_args, filters=filters)
