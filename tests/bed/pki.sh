#!/usr/bin/env bash
# pki.sh DIR: the test bed's small CA and every certificate and key the
# control plane needs, under DIR/pki. Idempotent: a certificate that exists,
# still verifies against the CA and carries the wanted names is reused.
#
# Settings (environment): BED_SERVICE_CIDR (default 10.32.0.0/24; its first
# address goes into the apiserver's certificate), BED_NODE_NAME (vmlet).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

[ $# -ge 1 ] || bed_die "usage: $0 DIR (certificates go to DIR/pki)"
mkdir -p "$1/pki"
pki=$(cd "$1/pki" && pwd)
service_cidr=${BED_SERVICE_CIDR:-10.32.0.0/24}
node_name=${BED_NODE_NAME:-vmlet}
umask 077

# first_ip CIDR: the network address plus one ("10.32.0.0/24" -> "10.32.0.1").
first_ip() {
    local ip=${1%/*} bits=${1#*/} a b c d n
    IFS=. read -r a b c d <<<"$ip"
    n=$(((a << 24 | b << 16 | c << 8 | d) & (0xffffffff << (32 - bits)) & 0xffffffff))
    n=$((n + 1))
    printf '%d.%d.%d.%d' $((n >> 24 & 255)) $((n >> 16 & 255)) $((n >> 8 & 255)) $((n & 255))
}
service_ip=$(first_ip "$service_cidr")

new_key() { [ -s "$1" ] || openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1" 2>/dev/null; }

make_ca() {
    if [ -s "$pki/ca.crt" ] && [ -s "$pki/ca.key" ]; then return 0; fi
    new_key "$pki/ca.key"
    openssl req -x509 -new -key "$pki/ca.key" -subj "/CN=vmlet-bed-ca" -days 3650 \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
        -out "$pki/ca.crt" 2>/dev/null
    bed_log "pki: made CA $pki/ca.crt"
}

# cert_ok NAME SAN: NAME.crt exists, verifies against the CA, and (when SAN
# is given) lists every name in it.
cert_ok() {
    local crt=$pki/$1.crt san=$2 want have
    [ -s "$crt" ] && [ -s "$pki/$1.key" ] || return 1
    openssl verify -CAfile "$pki/ca.crt" "$crt" >/dev/null 2>&1 || return 1
    [ -n "$san" ] || return 0
    have=$(openssl x509 -in "$crt" -noout -ext subjectAltName 2>/dev/null |
        tr -d ' ' | sed 's/IPAddress:/IP:/g')
    for want in ${san//,/ }; do
        case ",$(echo "$have" | tr '\n' ',')," in *[,:]"$want",*) ;; *) return 1 ;; esac
    done
}

# issue NAME SUBJECT EKU [SAN]: NAME.key + NAME.crt signed by the CA.
issue() {
    local name=$1 subject=$2 eku=$3 san=${4:-} ext
    cert_ok "$name" "$san" && return 0
    new_key "$pki/$name.key"
    ext=$(mktemp)
    {
        echo "basicConstraints=critical,CA:FALSE"
        echo "keyUsage=critical,digitalSignature,keyEncipherment"
        echo "extendedKeyUsage=$eku"
        [ -z "$san" ] || echo "subjectAltName=$san"
    } >"$ext"
    openssl req -new -key "$pki/$name.key" -subj "$subject" 2>/dev/null |
        openssl x509 -req -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
            -set_serial "0x$(openssl rand -hex 16)" -days 825 -extfile "$ext" \
            -out "$pki/$name.crt" 2>/dev/null
    rm -f "$ext"
    bed_log "pki: issued $name ($subject)"
}

make_ca
issue apiserver "/CN=kube-apiserver" serverAuth \
    "IP:127.0.0.1,IP:$service_ip,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
issue apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth
issue node "/O=system:nodes/CN=system:node:$node_name" serverAuth,clientAuth \
    "IP:127.0.0.1,DNS:$node_name,DNS:localhost"
issue admin "/O=system:masters/CN=admin" clientAuth
# The apiserver's identity towards aggregated APIs (requestheader auth).
issue front-proxy-client "/CN=front-proxy-client" clientAuth
# etcd's gateway dials its own port with the server certificate, so that
# one is a client certificate too.
issue etcd-server "/CN=etcd-server" serverAuth,clientAuth "IP:127.0.0.1,DNS:localhost"
issue etcd-client "/CN=kube-apiserver-etcd-client" clientAuth

if ! [ -s "$pki/sa.key" ] || ! [ -s "$pki/sa.pub" ]; then
    rm -f "$pki/sa.key" "$pki/sa.pub"
    new_key "$pki/sa.key"
    openssl pkey -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
    bed_log "pki: made service-account key pair"
fi
chmod 644 "$pki"/*.crt "$pki/sa.pub"
