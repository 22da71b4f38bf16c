"""How names and settings are shown on a public page: escaped bytes, no local paths."""

from __future__ import annotations

import os

from generator.site.text import format_setting, format_settings, public_name, shown


def test_undecodable_bytes_are_shown_escaped_and_encode() -> None:
    name = os.fsdecode(b"caf\xff")  # what a folder name with a stray byte becomes
    assert shown(name) == "caf\\xff"
    shown(name).encode("utf-8")  # strict: no surrogate left
    assert shown("café 猫") == "café 猫"  # valid text is unchanged
    assert shown("\ud800x").encode("utf-8")  # a surrogate fsdecode never makes, too


def test_paths_are_published_by_their_last_part() -> None:
    assert public_name("/home/someone/secret-data") == "secret-data"
    assert public_name("/home/someone/secret-data/") == "secret-data"
    assert public_name("C:\\Users\\me\\cats") == "cats"
    assert public_name("demo") == "demo"


def test_footer_settings_hide_paths_in_lists_and_keep_numbers() -> None:
    settings = {"data": "/srv/x/flowers", "probe_images": ["/a/b/1.png", "/c/2.png"], "lr": 0.01}
    assert dict(format_settings(settings)) == {
        "data": "flowers",
        "lr": "0.01",
        "probe_images": "1.png, 2.png",
    }
    assert format_setting(None) == "—" and format_setting([]) == "—"


def test_paths_nested_in_a_users_training_settings_are_hidden_too() -> None:
    """A ``Recorder(training={...})`` dict may nest paths at any depth."""
    nested = {"data": {"root": "/home/me/secret/cats", "files": ["/home/me/secret/1.png"]}}
    text = format_setting(nested)
    assert "secret" not in text and "cats" in text and "1.png" in text


def test_urls_on_pages_carry_no_password_or_signature() -> None:
    """A probe source, a setting or any shown text that is a URL (the store, the data,
    an image) loses its user info and signed-query tokens on a public page."""
    image = "https://KEY:SECRET@host/bkt/cat.png?X-Amz-Signature=SIG&X-Amz-Date=1"
    assert public_name(image) == "cat.png?X-Amz-Signature=***&X-Amz-Date=1"
    assert "SECRET" not in public_name("https://KEY:SECRET@host")
    shown_settings = format_setting({"data": "s3://KEY:SECRET@bkt/data", "n": [image]})
    assert "SECRET" not in shown_settings and "SIG" not in shown_settings
    assert shown("see https://h/x?sig=SIG") == "see https://h/x?sig=***"
