#!/bin/sh
# Starts nginx as the front door of the MLflow task.
#
# The image runs this script; the integration tests and `make local` run the
# very same script natively, choosing the nginx binary and runtime directory.
#
# Environment:
#   MLFLOW_AUTH_MODE      shared (default): nginx checks the one basic-auth
#                         user; accounts: MLflow checks its own users, nginx
#                         hands the Authorization header through; sso: the
#                         same, and requests without one reach MLflow too
#                         (browsers sign in there, with a session cookie)
#   MLFLOW_USERNAME, MLFLOW_PASSWORD  shared mode only, the one basic-auth user
#   NGINX_PORT            listening port (default 8080)
#   NGINX_LISTEN_ADDRESS  listening address (default: all; tests use 127.0.0.1)
#   NGINX_IAM_LISTEN      optional port of the IAM server (IAM sign-in, modes
#                         whose row in docker/mlflow/auth_modes.py has
#                         iam_sign_in): requests there carry the caller API
#                         Gateway verified in X-Mlflow-Iam-Caller; unset: no
#                         such server (the password server removes the header
#                         either way)
#   MLFLOW_UPSTREAM       MLflow's host:port (default 127.0.0.1:5000)
#   NGINX_RUNTIME_DIR     writable dir for config, password file, pid, temp
#                         files (default /tmp/nginx)
#   NGINX_BIN             nginx executable (default nginx)
#   NGINX_TEMPLATE        config template (default: next to this script; its
#                         folder holds server_common.conf too)
set -eu

fail() {
    printf 'nginx entrypoint: %s\n' "$*" >&2
    exit 64
}

here=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
NGINX_BIN=${NGINX_BIN:-nginx}
NGINX_RUNTIME_DIR=${NGINX_RUNTIME_DIR:-/tmp/nginx}
NGINX_TEMPLATE=${NGINX_TEMPLATE:-$here/nginx.conf.template}
NGINX_PORT=${NGINX_PORT:-8080}
NGINX_LISTEN_ADDRESS=${NGINX_LISTEN_ADDRESS:-}
NGINX_IAM_LISTEN=${NGINX_IAM_LISTEN:-}
MLFLOW_UPSTREAM=${MLFLOW_UPSTREAM:-127.0.0.1:5000}

MLFLOW_AUTH_MODE=${MLFLOW_AUTH_MODE:-shared}
case $MLFLOW_AUTH_MODE in
    shared)
        # Never serve MLflow unauthenticated: no credentials, no proxy.
        [ -n "${MLFLOW_USERNAME:-}" ] ||
            fail "MLFLOW_USERNAME is missing or empty; refusing to start without basic-auth credentials"
        [ -n "${MLFLOW_PASSWORD:-}" ] ||
            fail "MLFLOW_PASSWORD is missing or empty; refusing to start without basic-auth credentials"
        case $MLFLOW_USERNAME in
            *:* | *[[:space:]]*) fail "MLFLOW_USERNAME must not contain ':' or whitespace" ;;
        esac
        # nginx asks for the password file's user on every path but one, and
        # keeps the credentials from MLflow.
        auth_basic='"MLflow"'
        upstream_authorization='""'
        require_credentials=1
        iam_sign_in=0
        ;;
    accounts)
        # MLflow's auth app checks every request itself (it answers 401 with
        # the challenge), so nginx must hand the credentials through.
        auth_basic=off
        upstream_authorization='$http_authorization'
        require_credentials=1
        # MLflow's auth app maps an IAM caller to one of its users (iam_sign_in.py).
        iam_sign_in=1
        ;;
    sso)
        # The OIDC plugin checks every request: a browser's session cookie or
        # code's bearer token. A browser without a session must reach it to
        # be sent to the identity provider (and come back to /callback).
        auth_basic=off
        upstream_authorization='$http_authorization'
        require_credentials=0
        # The plugin's authentication, wrapped, maps an IAM caller to its user (oidc_iam_sign_in.py).
        iam_sign_in=1
        ;;
    *) fail "MLFLOW_AUTH_MODE must be shared, accounts or sso, got '$MLFLOW_AUTH_MODE'" ;;
esac

# Values substituted into the config are checked first, so no environment
# value can inject nginx directives.
case $NGINX_PORT in
    '' | *[!0-9]*) fail "NGINX_PORT must be a number, got '$NGINX_PORT'" ;;
esac
[ "$NGINX_PORT" -ge 1 ] && [ "$NGINX_PORT" -le 65535 ] ||
    fail "NGINX_PORT must be between 1 and 65535, got '$NGINX_PORT'"
if [ -n "$NGINX_IAM_LISTEN" ]; then
    [ "$iam_sign_in" = 1 ] ||
        fail "NGINX_IAM_LISTEN is set, but $MLFLOW_AUTH_MODE mode has no IAM sign-in; refusing to start"
    case $NGINX_IAM_LISTEN in
        *[!0-9]*) fail "NGINX_IAM_LISTEN must be a port number, got '$NGINX_IAM_LISTEN'" ;;
    esac
    [ "$NGINX_IAM_LISTEN" -ge 1 ] && [ "$NGINX_IAM_LISTEN" -le 65535 ] && [ "$NGINX_IAM_LISTEN" -ne "$NGINX_PORT" ] ||
        fail "NGINX_IAM_LISTEN must be between 1 and 65535 and differ from NGINX_PORT, got '$NGINX_IAM_LISTEN'"
fi
case $MLFLOW_UPSTREAM in
    '' | *[!A-Za-z0-9.:[\]-]*) fail "MLFLOW_UPSTREAM must look like host:port, got '$MLFLOW_UPSTREAM'" ;;
esac
case $NGINX_LISTEN_ADDRESS in
    *[!A-Za-z0-9.:[\]-]*) fail "NGINX_LISTEN_ADDRESS must be an address, got '$NGINX_LISTEN_ADDRESS'" ;;
esac
case $NGINX_RUNTIME_DIR in
    /*) ;;
    *) fail "NGINX_RUNTIME_DIR must be an absolute path" ;;
esac
case $NGINX_RUNTIME_DIR in
    *[!A-Za-z0-9._/-]*) fail "NGINX_RUNTIME_DIR may only contain letters, digits and . _ / -" ;;
esac
[ -r "$NGINX_TEMPLATE" ] || fail "config template not readable: $NGINX_TEMPLATE"
server_common=$(dirname -- "$NGINX_TEMPLATE")/server_common.conf
[ -r "$server_common" ] || fail "config part not readable: $server_common"

listen=$NGINX_PORT
[ -z "$NGINX_LISTEN_ADDRESS" ] || listen="$NGINX_LISTEN_ADDRESS:$NGINX_PORT"
iam_listen=$NGINX_IAM_LISTEN
[ -z "$NGINX_LISTEN_ADDRESS" ] || [ -z "$iam_listen" ] || iam_listen="$NGINX_LISTEN_ADDRESS:$NGINX_IAM_LISTEN"
# Without NGINX_IAM_LISTEN the IAM server's lines are left out.
if [ -n "$iam_listen" ]; then
    iam_lines='/@IAM_SERVER_BEGIN@/d; /@IAM_SERVER_END@/d'
else
    iam_lines='/@IAM_SERVER_BEGIN@/,/@IAM_SERVER_END@/d'
fi

# Everything written from here on is private to the nginx user.
umask 077
mkdir -p "$NGINX_RUNTIME_DIR"
for d in client_body proxy fastcgi uwsgi scgi; do
    mkdir -p "$NGINX_RUNTIME_DIR/$d"
done

# Password file: SHA-512-crypt ($6$) with a random 16-character salt.
# Not MD5-crypt (weak) and not plain text. nginx verifies the hash on every
# request, so its cost is paid per request: bcrypt at a useful cost caps a
# worker at a few dozen requests per second, SHA-512-crypt at the glibc
# default of 5000 rounds costs about 1.6 ms of CPU per request, at 1000
# rounds (the minimum) about 0.3 ms. The password is machine-generated by
# Secrets Manager (long and random), so key stretching adds nothing against
# guessing it, and 1000 rounds keep auth out of the proxy's overhead.
# The hash comes from perl's crypt(), i.e. the system libcrypt, which nginx
# itself uses to verify it. perl-base is an Essential package of every Debian
# image, so it exists in the nginx base image (which has no openssl CLI) as
# well as on the test machines; the Dockerfile checks it at build time. The
# password is read from the environment, never from argv, so it does not
# show in the process list.
if [ "$MLFLOW_AUTH_MODE" = shared ]; then
perl -e '
    my @alphabet = ("a" .. "z", "A" .. "Z", "0" .. "9", ".", "/");
    open(my $random, "<:raw", "/dev/urandom") or die "cannot read /dev/urandom\n";
    read($random, my $bytes, 16) == 16 or die "short read from /dev/urandom\n";
    my $salt = join("", map { $alphabet[ord($_) % 64] } split(//, $bytes));
    my $setting = "\$6\$rounds=1000\$$salt\$";
    my $hash = crypt($ENV{MLFLOW_PASSWORD}, $setting);
    defined($hash) && $hash =~ /^\Q$setting\E[A-Za-z0-9.\/]{86}$/
        or die "this libcrypt cannot make SHA-512-crypt hashes\n";
    print "$ENV{MLFLOW_USERNAME}:$hash\n";
' >"$NGINX_RUNTIME_DIR/htpasswd" || fail "could not write the password file"
else
    rm -f "$NGINX_RUNTIME_DIR/htpasswd"
fi

sed -e "$iam_lines" \
    -e "s|@NGINX_LISTEN@|$listen|g" \
    -e "s|@NGINX_IAM_LISTEN@|$iam_listen|g" \
    -e "s|@MLFLOW_UPSTREAM@|$MLFLOW_UPSTREAM|g" \
    -e "s|@AUTH_BASIC@|$auth_basic|g" \
    -e "s|@UPSTREAM_AUTHORIZATION@|$upstream_authorization|g" \
    -e "s|@REQUIRE_CREDENTIALS@|$require_credentials|g" \
    "$NGINX_TEMPLATE" >"$NGINX_RUNTIME_DIR/nginx.conf"
cp -- "$server_common" "$NGINX_RUNTIME_DIR/server_common.conf"

# nginx needs neither secret: keep the plain password out of its environment.
unset MLFLOW_PASSWORD
if [ "$MLFLOW_AUTH_MODE" = shared ]; then
    who="user $MLFLOW_USERNAME"
else
    who="users checked by MLflow"
fi
[ -z "$iam_listen" ] || listen="$listen and $iam_listen (IAM sign-in)"
printf 'nginx entrypoint: mode %s (%s), listening on %s, upstream %s\n' \
    "$MLFLOW_AUTH_MODE" "$who" "$listen" "$MLFLOW_UPSTREAM" >&2
exec "$NGINX_BIN" -p "$NGINX_RUNTIME_DIR/" -c "$NGINX_RUNTIME_DIR/nginx.conf" -e stderr
