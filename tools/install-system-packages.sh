#!/bin/sh
# Install the Debian/Ubuntu packages the test suite and `make local` need
# (tools/system-packages.txt), so that `make test` is the whole set-up.
#
# Nothing happens when they are all installed. Otherwise apt-get installs the
# missing ones, through sudo when not root. Where that is impossible (no
# apt-get, or neither root nor sudo) it says so in one line: without apt-get
# it goes on (the tools may come from elsewhere), without a way to install it
# stops.
set -eu

here=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
list=${SYSTEM_PACKAGES_FILE:-$here/system-packages.txt}

packages=$(sed -e 's/#.*//' "$list" | tr -s ' \t' '\n\n' | sed '/^$/d')

missing=""
if command -v dpkg-query >/dev/null 2>&1; then
    for package in $packages; do
        status=$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true)
        [ "$status" = "install ok installed" ] || missing="$missing $package"
    done
else
    missing=" $(echo $packages)"
fi
missing=${missing# }
[ -n "$missing" ] || exit 0

if ! command -v apt-get >/dev/null 2>&1; then
    echo "system packages: no apt-get here; make sure the equivalents of these Debian packages are installed: $missing" >&2
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    sudo=""
elif command -v sudo >/dev/null 2>&1; then
    sudo="sudo"
else
    echo "system packages: missing $missing; run as root or install sudo, then: apt-get install $missing" >&2
    exit 1
fi

echo "system packages: installing $missing" >&2
export DEBIAN_FRONTEND=noninteractive
# shellcheck disable=SC2086 # one word per package
if ! { $sudo apt-get update -qq && $sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null; }; then
    echo "system packages: apt-get could not install $missing (see its messages above)" >&2
    exit 1
fi
# The packages start system services the tests do not use (they run their own
# instances on loopback): stop them where a service manager exists.
for service in nginx postgresql; do
    $sudo service "$service" stop >/dev/null 2>&1 || true
done
