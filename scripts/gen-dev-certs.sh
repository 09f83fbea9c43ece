#!/usr/bin/env bash
# Development and test certificates for the agent<->controller TLS link (docs/security.md).
#
#   scripts/gen-dev-certs.sh DIR
#
# Writes into DIR (created, mode 0700; keys 0600), with the openssl CLI only:
#   ca.pem ca.key                  development CA ("Tapio Dev CA")
#   server.pem server.key          controller cert, SAN DNS:localhost, IP:127.0.0.1,
#                                  DNS:tapio-controller, DNS:tapio-controller.tapio.svc
#   client.pem client.key          agent cert (CN tapio-agent), signed by ca
#   client-expired.pem/.key        agent cert signed by ca, valid 2020-01-01..2020-01-02
#   other-ca.pem other-ca.key      a second, unrelated CA
#   other-client.pem/.key          agent cert signed by the second CA
#   other-server.pem/.key          controller cert (same SANs) signed by the second CA
# Idempotent: files that exist are kept (delete DIR to start over). Not for production:
# the keys are unencrypted and the CA key sits next to the certificates.
set -euo pipefail

if [ $# -ne 1 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
	echo "usage: $0 DIR" >&2
	exit 2
fi
command -v openssl >/dev/null || { echo "gen-dev-certs: openssl not found" >&2; exit 1; }

dir=$1
mkdir -p "$dir"
chmod 700 "$dir"
cd "$dir"
umask 077

SERVER_SAN="DNS:localhost,IP:127.0.0.1,DNS:tapio-controller,DNS:tapio-controller.tapio.svc"

key() { # NAME
	[ -s "$1.key" ] || openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
		-out "$1.key" 2>/dev/null
}

ca() { # NAME CN
	key "$1"
	[ -s "$1.pem" ] || openssl req -x509 -new -key "$1.key" -sha256 -days 3650 \
		-subj "/O=Tapio Dev/CN=$2" \
		-addext "basicConstraints=critical,CA:TRUE" \
		-addext "keyUsage=critical,keyCertSign,cRLSign" -out "$1.pem"
}

leaf() { # NAME CN CA USAGE [SAN]
	local name=$1 cn=$2 ca=$3 usage=$4 san=${5:-} ext
	[ -s "$name.pem" ] && return 0
	key "$name"
	ext=$(mktemp)
	{
		echo "basicConstraints=critical,CA:FALSE"
		echo "keyUsage=critical,digitalSignature"
		echo "extendedKeyUsage=$usage"
		[ -n "$san" ] && echo "subjectAltName=$san"
	} >"$ext"
	openssl req -new -key "$name.key" -subj "/O=Tapio Dev/CN=$cn" -out "$name.csr"
	openssl x509 -req -in "$name.csr" -CA "$ca.pem" -CAkey "$ca.key" -CAcreateserial \
		-sha256 -days 825 -extfile "$ext" -out "$name.pem" 2>/dev/null
	rm -f "$name.csr" "$ext"
}

# An expired certificate needs explicit validity dates, which only `openssl ca` sets in 3.0.
expired() { # NAME CN CA
	local name=$1 cn=$2 ca=$3 work
	[ -s "$name.pem" ] && return 0
	key "$name"
	work=$(mktemp -d)
	: >"$work/index.txt"
	echo 1000 >"$work/serial"
	cat >"$work/ca.cnf" <<EOF
[ ca ]
default_ca = dev
[ dev ]
database = $work/index.txt
serial = $work/serial
new_certs_dir = $work
default_md = sha256
policy = any
unique_subject = no
copy_extensions = none
x509_extensions = leaf
[ any ]
organizationName = optional
commonName = supplied
[ leaf ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
EOF
	openssl req -new -key "$name.key" -subj "/O=Tapio Dev/CN=$cn" -out "$work/req.csr"
	openssl ca -batch -config "$work/ca.cnf" -cert "$ca.pem" -keyfile "$ca.key" \
		-startdate 20200101000000Z -enddate 20200102000000Z -notext \
		-in "$work/req.csr" -out "$name.pem" 2>/dev/null
	rm -rf "$work"
}

ca ca "Tapio Dev CA"
ca other-ca "Tapio Other CA"
leaf server tapio-controller ca serverAuth "$SERVER_SAN"
leaf client tapio-agent ca clientAuth
expired client-expired tapio-agent-expired ca
leaf other-client tapio-agent-other other-ca clientAuth
leaf other-server tapio-controller other-ca serverAuth "$SERVER_SAN"
rm -f ./*.srl
chmod 600 ./*.key
chmod 644 ./*.pem
echo "gen-dev-certs: certificates in $(pwd)"
