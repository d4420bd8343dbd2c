"""Video library over real HTTP: probe + rendition + poster, refusals, duplicates, Range requests."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import pytest

from analyses.library.services import video_extension_for
from analyses.models import Video
from audit.models import AuditEvent
from tests.jobs import queued_task_names, run_queued_tasks
from tests.web.library_factories import (  # noqa: F401 - fixtures
    code_from_location,
    media_files,
    private_media_root,
    sha256_of,
    upload_spy,
    upload_video,
    video_files,
)

pytestmark = pytest.mark.django_db(transaction=True)


def _file_error(response: Any) -> str:
    assert 'data-testid="error-file"' in response.text, response.text[:3000]
    return html.unescape(response.text.split('data-testid="error-file"', 1)[1].split("</ul>", 1)[0]).lower()


def _refusal_after_processing(client: Any, response: Any) -> str:
    """An upload the worker refused: the upload was accepted (302 to its page), the page now
    says why it was refused, and only its owner sees the entry."""
    assert response.status_code == 302, response.text[:3000]
    page = client.get(response.headers["Location"])
    assert page.status_code == 200
    assert 'data-testid="refused-state"' in page.text, page.text[:3000]
    reason = page.text.split('data-testid="refusal-reason">', 1)[1].split("</strong>", 1)[0]
    return html.unescape(reason).lower()


def _nothing_kept(media_root: Path) -> None:
    video = Video.objects.get()
    assert (video.status, video.file.name) == ("failed", "")
    assert media_files(media_root) == []
    assert not AuditEvent.objects.filter(action="video.created").exists()
    assert AuditEvent.objects.filter(action="video.refused", target_code=video.code).count() == 1


def test_uploaded_avi_is_probed_transcoded_to_h264_and_gets_a_poster(
    web: Any, owner: Any, member: Any, team: Any, video_files: dict[str, Path], private_media_root: Path
) -> None:
    client = web(owner)
    response = upload_video(
        client, video_files["avi"], process=False, name="Pattern", team=str(team.pk), expected_class="2"
    )
    assert response.status_code == 302, response.text[:3000]
    code = code_from_location(response, prefix="/videos/")
    # The upload answered before anything parsed the file: the row waits for a worker.
    video = Video.objects.get(code=code)
    assert (video.status, video.rendition.name, video.frame_count) == ("processing", "", 0)
    assert queued_task_names() == [f"video-{video.pk}"]
    waiting = client.get(f"/videos/{code}/")
    assert waiting.status_code == 200 and 'data-testid="processing-state"' in waiting.text
    assert client.get(f"/videos/{code}/status.json").json()["status"] == "processing"
    teammate = web(member)
    assert teammate.get(f"/videos/{code}/").status_code == 404  # shared once it is accepted
    run_queued_tasks()
    assert client.get(f"/videos/{code}/status.json").json()["status"] == "ready"
    assert teammate.get(f"/videos/{code}/").status_code == 200
    video = Video.objects.get(code=code)
    assert (video.width, video.height) == (96, 64)
    assert video.fps == pytest.approx(10, abs=0.01)
    assert video.duration_seconds == pytest.approx(2.0, abs=0.15)
    assert video.frame_count == 20
    assert video.codec == "mpeg4"
    assert video.expected_class == 2
    assert video.sha256 == sha256_of(video_files["avi"])
    assert video.original_filename == "clip.avi"
    stem = Path(video.file.name).stem
    assert video.file.name == f"videos/{stem}.avi"
    assert video.rendition.name == f"videos/{stem}.web.mp4"
    assert video.poster.name == f"videos/{stem}.poster.jpg"
    assert set(media_files(private_media_root)) == {
        private_media_root / video.file.name,
        private_media_root / video.rendition.name,
        private_media_root / video.poster.name,
    }
    assert AuditEvent.objects.filter(action="video.created", target_code=video.code).count() == 1
    assert AuditEvent.objects.filter(action="video.uploaded", target_code=video.code).count() == 1
    assert video.derived_bytes == sum(
        (private_media_root / name).stat().st_size for name in (video.rendition.name, video.poster.name)
    )

    rendition = client.get(f"/videos/{code}/rendition.mp4")
    assert rendition.status_code == 200
    assert rendition.headers["Content-Type"] == "video/mp4"
    assert rendition.content[4:8] == b"ftyp"
    # +faststart: the index (moov) comes before the media data (mdat).
    assert 0 <= rendition.content.find(b"moov") < rendition.content.find(b"mdat")
    poster = client.get(f"/videos/{code}/poster.jpg")
    assert poster.status_code == 200 and poster.content[:3] == b"\xff\xd8\xff"
    original = client.get(f"/videos/{code}/original/")
    assert original.content == video_files["avi"].read_bytes()
    assert "clip.avi" in original.headers["Content-Disposition"]

    page = html.unescape(client.get(f"/videos/{code}/").text)
    assert f'src="/videos/{code}/rendition.mp4"' in page
    for text in ("96 × 64", "10.00 fps", "20", "mpeg4", video.sha256, "Vision Lab"):
        assert text in page


def test_range_requests_return_partial_content_with_the_right_bytes(
    web: Any, owner: Any, video_files: dict[str, Path]
) -> None:
    client = web(owner)
    code = code_from_location(upload_video(client, video_files["mp4"]), prefix="/videos/")
    url = f"/videos/{code}/original/"
    whole = video_files["mp4"].read_bytes()
    size = len(whole)

    full = client.get(url)
    assert full.status_code == 200
    assert full.headers["Accept-Ranges"] == "bytes"
    assert int(full.headers["Content-Length"]) == size

    part = client.get(url, headers={"Range": "bytes=10-99"})
    assert part.status_code == 206
    assert part.content == whole[10:100]
    assert part.headers["Content-Range"] == f"bytes 10-99/{size}"
    assert int(part.headers["Content-Length"]) == 90

    tail = client.get(url, headers={"Range": "bytes=-16"})
    assert tail.status_code == 206 and tail.content == whole[-16:]
    open_ended = client.get(url, headers={"Range": f"bytes={size - 5}-"})
    assert open_ended.status_code == 206 and open_ended.content == whole[-5:]

    beyond = client.get(url, headers={"Range": f"bytes={size + 10}-{size + 20}"})
    assert beyond.status_code == 416
    assert beyond.headers["Content-Range"] == f"bytes */{size}"

    etag = full.headers["ETag"]
    assert client.get(url, headers={"If-None-Match": etag}).status_code == 304
    stale = client.get(url, headers={"Range": "bytes=0-9", "If-Range": '"stale"'})
    assert stale.status_code == 200 and stale.content == whole


@pytest.mark.parametrize(
    ("variant", "expected_words"),
    [
        ("text_as_mp4", ["not a video"]),
        ("audio_only", ["no video stream"]),
        ("empty", ["empty"]),
    ],
)
def test_refused_video_shows_why_and_stores_nothing(
    web: Any,
    owner: Any,
    video_files: dict[str, Path],
    private_media_root: Path,
    variant: str,
    expected_words: list[str],
) -> None:
    client = web(owner)
    response = upload_video(client, video_files[variant])
    if variant == "empty":  # known before the file is stored: refused by the upload itself
        assert response.status_code == 400
        assert "empty" in _file_error(response)
        assert Video.objects.count() == 0 and media_files(private_media_root) == []
        return
    message = _refusal_after_processing(client, response)
    assert any(word in message for word in expected_words), message
    _nothing_kept(private_media_root)


def test_video_longer_than_the_limit_is_refused(
    web: Any, owner: Any, settings: Any, video_files: dict[str, Path], private_media_root: Path
) -> None:
    settings.GRADCAM_MAX_VIDEO_SECONDS = 1.0
    client = web(owner)
    message = _refusal_after_processing(client, upload_video(client, video_files["avi"]))
    assert "lasts 2.0 s" in message and "limit is 1 s" in message, message
    _nothing_kept(private_media_root)


def test_video_bigger_than_the_size_limit_is_refused(
    web: Any, owner: Any, settings: Any, video_files: dict[str, Path], private_media_root: Path
) -> None:
    settings.GRADCAM_MAX_VIDEO_BYTES = 2048
    response = upload_video(web(owner), video_files["avi"])
    assert response.status_code == 400
    assert "larger than the limit" in _file_error(response)
    assert Video.objects.count() == 0
    assert media_files(private_media_root) == []


def test_duplicate_video_redirects_to_the_existing_one(
    web: Any, owner: Any, video_files: dict[str, Path], private_media_root: Path
) -> None:
    client = web(owner)
    first = upload_video(client, video_files["mp4"])
    second = upload_video(client, video_files["mp4"], name="again")
    assert second.status_code == 302
    assert second.headers["Location"] == first.headers["Location"]
    assert Video.objects.count() == 1
    assert len(media_files(private_media_root)) == 3
    assert "already uploaded this video" in html.unescape(client.get(second.headers["Location"]).text)


def test_deleting_a_video_removes_its_three_files(
    web: Any, owner: Any, video_files: dict[str, Path], private_media_root: Path
) -> None:
    client = web(owner)
    code = code_from_location(upload_video(client, video_files["mp4"]), prefix="/videos/")
    assert client.post(f"/videos/{code}/", data={"name": "Renamed", "expected_class": "1"}).status_code == 302
    assert Video.objects.get().expected_class == 1
    assert client.post(f"/videos/{code}/delete/").status_code == 302
    assert not Video.objects.exists()
    assert media_files(private_media_root) == []
    assert AuditEvent.objects.filter(action="video.deleted").count() == 1


def test_stored_extension_comes_from_the_probed_container_not_the_user() -> None:
    assert video_extension_for(container="mov,mp4,m4a,3gp,3g2,mj2") == ".mp4"
    assert video_extension_for(container="matroska,webm") == ".mkv"
    assert video_extension_for(container="avi") == ".avi"
    assert video_extension_for(container="something-new") == ".video"


def test_preview_clip_runs_the_engine_with_typed_parameters(
    video_files: dict[str, Path], tmp_path: Path
) -> None:
    from analyses.worker import engine_client

    result = engine_client.preview_clip(
        video_files["avi"], [4, 16, 16, 3], {"frame_stride": 2, "resize_mode": None}, tmp_path / "preview"
    )
    assert len(result["source_frame_indices"]) == 4
    assert len(result["timestamps"]) == 4
    assert Path(result["clip"]).is_file()
    with pytest.raises(engine_client.EngineError):
        engine_client.preview_clip(video_files["text_as_mp4"], [4, 16, 16, 3], {}, tmp_path / "bad")


def test_repeated_file_parts_cannot_add_up_past_the_size_limit(
    web: Any, owner: Any, settings: Any, private_media_root: Path, upload_spy: dict[str, int]
) -> None:
    settings.GRADCAM_MAX_VIDEO_BYTES = 100 * 1024
    part = b"\1" * (80 * 1024)  # each part is under the limit; together they are not
    response = web(owner).post(
        "/videos/",
        data={"name": "Many parts"},
        files=[("file", (f"part{index}.mp4", part, "video/mp4")) for index in range(5)],
    )
    assert response.status_code == 400
    assert "larger than the limit of 100.0\xa0kb" in _file_error(response)
    assert upload_spy["file"] <= settings.GRADCAM_MAX_VIDEO_BYTES
    assert Video.objects.count() == 0
    assert media_files(private_media_root) == []


# --------------------------------------------------------------------------- engine timeouts
def _stand_in_engine(tmp_path: Path, body: str) -> str:
    import sys

    script = tmp_path / "engine_stand_in.py"
    script.write_text(f"#!{sys.executable}\nimport json, os, sys, time\n{body}\n")
    script.chmod(0o755)
    return str(script)


def _option(argv: list[str], name: str) -> float:
    return float(argv[argv.index(name) + 1])


def test_video_children_stop_themselves_before_the_web_kills_them(settings: Any, tmp_path: Path) -> None:
    from analyses.worker import engine_client

    settings.GRADCAM_ENGINE_PYTHON = _stand_in_engine(
        tmp_path, 'print(json.dumps({"ok": True, "argv": sys.argv[1:]}))'
    )
    settings.GRADCAM_PROBE_TIMEOUT = 60.0
    settings.GRADCAM_TRANSCODE_TIMEOUT = 600.0
    argv = engine_client.probe_video_file(tmp_path / "v.mp4")["argv"]
    assert 0 < _option(argv, "--timeout") < 60 and 0 < _option(argv, "--processing-timeout") < 60
    # transcode = probe + encode + poster (+ one poster retry), one after the other
    argv = engine_client.transcode_video_file(tmp_path / "v.mp4", tmp_path / "o.mp4", tmp_path / "p.jpg")[
        "argv"
    ]
    short, long = _option(argv, "--timeout"), _option(argv, "--processing-timeout")
    assert short > 0 and long >= 300
    assert 3 * short + long < 600
    # preview = probe + decode (+ one decode retry)
    argv = engine_client.preview_clip(tmp_path / "v.mp4", [4, 16, 16, 3], {}, tmp_path / "out")["argv"]
    short, long = _option(argv, "--timeout"), _option(argv, "--processing-timeout")
    assert short > 0 and long > 0 and short + 2 * long < 600


def test_a_transcode_killed_at_the_web_timeout_leaves_no_partial_file(
    web: Any,
    owner: Any,
    settings: Any,
    tmp_path: Path,
    video_files: dict[str, Path],
    private_media_root: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import tempfile

    # A child that, like FFmpeg mid-encode, has a partial rendition next to its output and a
    # scratch file in its temp dir when the web process kills it. The child cannot write
    # anywhere else (sandbox), so the temp dirs made for it are recorded here instead.
    made: list[str] = []
    real_mkdtemp = tempfile.mkdtemp

    def recording_mkdtemp(*args: Any, **kwargs: Any) -> str:
        made.append(real_mkdtemp(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(tempfile, "mkdtemp", recording_mkdtemp)
    settings.GRADCAM_ENGINE_PYTHON = _stand_in_engine(
        tmp_path,
        "out = sys.argv[sys.argv.index('--out') + 1]\n"
        "head, name = os.path.split(out)\n"
        "open(os.path.join(head, '.' + name + '.abcd1234.partial.mp4'), 'wb').write(b'half')\n"
        "open(os.path.join(os.environ['TMPDIR'], 'scratch'), 'wb').write(b'x')\n"
        "time.sleep(60)",
    )
    settings.GRADCAM_TRANSCODE_TIMEOUT = 2.0
    client = web(owner)
    assert "longer than 2 seconds" in _refusal_after_processing(
        client, upload_video(client, video_files["avi"])
    )
    _nothing_kept(private_media_root)
    child_dirs = [path for path in made if "gradcam-engine-" in path]
    assert child_dirs and not any(Path(path).exists() for path in child_dirs)
