#!/bin/sh
# Make sure the browser test (tests/test_browser.py) has a headless Chromium and its driver.
#
# The test drives the serving app's upload page in Debian's Chromium through chromedriver.
# When either is missing and this runs as root with apt-get (a Debian or Ubuntu CI container),
# install Debian's `chromium` and `chromium-driver`, refreshing the package lists only if the
# first attempt fails. Otherwise say that the browser test will be skipped. Never fails:
# the rest of the test suite runs either way.
#
# CHROMIUM and CHROMEDRIVER point the test (and this check) at other binaries, e.g. the
# Chrome and chromedriver preinstalled on GitHub's runners.
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
CHROMEDRIVER="${CHROMEDRIVER:-/usr/bin/chromedriver}"

have_browser() {
    [ -x "$CHROMIUM" ] && [ -x "$CHROMEDRIVER" ]
}

if have_browser; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure_browser: $CHROMIUM or $CHROMEDRIVER is missing and cannot be installed here" \
        "(needs root and apt-get): the browser test will be skipped." \
        "Install them with: sudo apt-get install chromium chromium-driver"
    exit 0
fi

install() {
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        chromium chromium-driver >/dev/null 2>&1
}

echo "ensure_browser: installing chromium and chromium-driver for the browser test"
install || { apt-get update -qq >/dev/null 2>&1 && install; }
if have_browser; then
    echo "ensure_browser: $("$CHROMIUM" --version 2>/dev/null | tail -n 1)"
else
    echo "ensure_browser: the installation failed: the browser test will be skipped."
fi
exit 0
