"""The browser fixture sees what the report and explorer tests rely on it to see: a page that
loads cleanly reads clean, and a missing image and a console error are caught."""

from __future__ import annotations

from browser import browser, console_errors, failed_requests  # noqa: F401  (a fixture)

PIXEL = ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJR"
         "U5ErkJggg==")


def test_a_clean_page_reads_clean(browser, tmp_path):  # noqa: F811
    page = tmp_path / "a.html"
    page.write_text(f"<html><body><h1>hi</h1><img src='{PIXEL}'></body></html>")
    browser.get(page.as_uri())
    assert browser.find_element("tag name", "h1").text == "hi"
    assert browser.execute_script("return document.images[0].naturalWidth") == 1
    assert (console_errors(browser), failed_requests(browser)) == ([], [])


def test_a_missing_image_and_a_console_error_are_caught(browser, tmp_path):  # noqa: F811
    page = tmp_path / "b.html"
    page.write_text("<html><body><img src='missing.png'><script>console.error('boom')</script></body></html>")
    browser.get(page.as_uri())
    assert any("missing.png" in f for f in failed_requests(browser))
    assert any("boom" in m for m in console_errors(browser))
