// Pod IP allocation: address arithmetic, and the Lua scripts that make each
// change to Redis atomic across launchers.
#include "ipam.h"

#include "vmlet/xalloc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

// --- address arithmetic ------------------------------------------------------

int ipam_addr_parse(const char *text, uint32_t *out, vmlet_err_t *err)
{
    struct in_addr a;
    // inet_pton takes exactly four decimal parts (no "10.1", no octal).
    if (!text || inet_pton(AF_INET, text, &a) != 1)
        return vmlet_err_set(err, "\"%s\" is not an IPv4 address (a.b.c.d)", text ? text : "");
    *out = ntohl(a.s_addr);
    return 0;
}

void ipam_addr_format(uint32_t addr, char buf[INET_ADDRSTRLEN])
{
    snprintf(buf, INET_ADDRSTRLEN, "%u.%u.%u.%u", addr >> 24, (addr >> 16) & 0xff,
             (addr >> 8) & 0xff, addr & 0xff);
}

void ipam_cidr_format(const ipam_cidr_t *cidr, char buf[IPAM_CIDR_STRLEN])
{
    char a[INET_ADDRSTRLEN];
    ipam_addr_format(cidr->network, a);
    snprintf(buf, IPAM_CIDR_STRLEN, "%s/%d", a, cidr->prefix);
}

uint32_t ipam_netmask(const ipam_cidr_t *cidr)
{
    return cidr->prefix == 0 ? 0 : 0xffffffffu << (32 - cidr->prefix);
}

uint32_t ipam_broadcast(const ipam_cidr_t *cidr)
{
    return cidr->network | ~ipam_netmask(cidr);
}

uint32_t ipam_first(const ipam_cidr_t *cidr)
{
    return cidr->network + 1;
}

uint32_t ipam_last(const ipam_cidr_t *cidr)
{
    return ipam_broadcast(cidr) - 1;
}

bool ipam_contains(const ipam_cidr_t *cidr, uint32_t addr)
{
    return (addr & ipam_netmask(cidr)) == cidr->network;
}

bool ipam_assignable(const ipam_cidr_t *cidr, uint32_t addr)
{
    return ipam_contains(cidr, addr) && addr >= ipam_first(cidr) && addr <= ipam_last(cidr) &&
           addr != cidr->gateway;
}

uint32_t ipam_capacity(const ipam_cidr_t *cidr)
{
    return ipam_last(cidr) - ipam_first(cidr); // usable addresses less the gateway
}

int ipam_cidr_parse(const char *text, ipam_cidr_t *out, vmlet_err_t *err)
{
    if (!text || !*text)
        return vmlet_err_set(err, "empty CIDR (expected a.b.c.d/len)");
    const char *slash = strchr(text, '/');
    if (!slash || slash == text || slash - text >= INET_ADDRSTRLEN)
        return vmlet_err_set(err, "CIDR \"%s\": expected a.b.c.d/len", text);
    char addr[INET_ADDRSTRLEN];
    memcpy(addr, text, (size_t)(slash - text));
    addr[slash - text] = '\0';
    uint32_t a = 0;
    if (ipam_addr_parse(addr, &a, err) < 0)
        return vmlet_err_wrap(err, "CIDR \"%s\"", text);
    const char *p = slash + 1;
    int len = 0;
    if (!*p || strlen(p) > 2)
        return vmlet_err_set(err, "CIDR \"%s\": bad prefix length", text);
    for (; *p; p++) {
        if (*p < '0' || *p > '9')
            return vmlet_err_set(err, "CIDR \"%s\": bad prefix length", text);
        len = len * 10 + (*p - '0');
    }
    if (len < IPAM_PREFIX_MIN || len > IPAM_PREFIX_MAX)
        return vmlet_err_set(err, "CIDR \"%s\": prefix length must be /%d to /%d", text,
                             IPAM_PREFIX_MIN, IPAM_PREFIX_MAX);
    ipam_cidr_t c = {.network = a, .prefix = len};
    if ((a & ipam_netmask(&c)) != a) {
        c.network = a & ipam_netmask(&c);
        char meant[IPAM_CIDR_STRLEN];
        ipam_cidr_format(&c, meant);
        return vmlet_err_set(err, "CIDR \"%s\" has host bits set (did you mean %s?)", text, meant);
    }
    c.gateway = ipam_first(&c);
    *out = c;
    return 0;
}

int ipam_cidr_set_gateway(ipam_cidr_t *cidr, const char *gateway, vmlet_err_t *err)
{
    if (!gateway || !*gateway) {
        cidr->gateway = ipam_first(cidr);
        return 0;
    }
    uint32_t g = 0;
    if (ipam_addr_parse(gateway, &g, err) < 0)
        return vmlet_err_wrap(err, "gateway");
    char c[IPAM_CIDR_STRLEN];
    ipam_cidr_format(cidr, c);
    if (!ipam_contains(cidr, g))
        return vmlet_err_set(err, "gateway %s is outside %s", gateway, c);
    if (g < ipam_first(cidr) || g > ipam_last(cidr))
        return vmlet_err_set(err, "gateway %s is the network or broadcast address of %s", gateway,
                             c);
    cidr->gateway = g;
    return 0;
}

bool ipam_valid_name(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 128)
        return false;
    for (; *s; s++) {
        char ch = *s;
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '_' || ch == '-'))
            return false;
    }
    return true;
}

// --- the allocator -------------------------------------------------------------

struct _ipam_t {
    vmlet_store_t *store;
    ipam_cidr_t cidr;
    char cidr_text[IPAM_CIDR_STRLEN];
    char *owner;
};

// KEYS: ipam hash, pod lease, next cursor, owner set.
// ARGV: cidr, uid, owner, network, first offset, last offset, gateway offset.
// Returns {0, ip} for the address held already, {3, ip} for a new one,
// {1, in use count} when full, {2, ip, cidr} when the pod holds an address
// from another CIDR.
static const char s_acquire_lua[] =
    "local cidr, uid, owner = ARGV[1], ARGV[2], ARGV[3]\n"
    "local held = redis.call('HGET', KEYS[2], 'ip')\n"
    "if held then\n"
    "  local hc = redis.call('HGET', KEYS[2], 'cidr')\n"
    "  if hc ~= cidr then return {2, held, hc or ''} end\n"
    "  local holder = redis.call('HGET', KEYS[1], held)\n"
    "  if holder and holder ~= uid then\n"
    "    return redis.error_reply('address ' .. held .. ' is recorded for pod ' .. uid ..\n"
    "      ' and for pod ' .. holder)\n"
    "  end\n"
    "  redis.call('HSET', KEYS[1], held, uid)\n"
    "  local old = redis.call('HGET', KEYS[2], 'owner')\n"
    "  if old ~= owner then\n"
    "    if old then redis.call('SREM', 'vmlet:ipam-owner:' .. old, uid) end\n"
    "    redis.call('HSET', KEYS[2], 'owner', owner)\n"
    "  end\n"
    "  redis.call('SADD', KEYS[4], uid)\n"
    "  return {0, held}\n"
    "end\n"
    "local base = tonumber(ARGV[4])\n"
    "local first, last, gw = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])\n"
    "local n = last - first + 1\n"
    "local start = tonumber(redis.call('GET', KEYS[3])) or first\n"
    "if start < first or start > last then start = first end\n"
    "for i = 0, n - 1 do\n"
    "  local off = first + (start - first + i) % n\n"
    "  if off ~= gw then\n"
    "    local a = base + off\n"
    "    local ip = string.format('%d.%d.%d.%d', math.floor(a / 16777216) % 256,\n"
    "      math.floor(a / 65536) % 256, math.floor(a / 256) % 256, a % 256)\n"
    "    if redis.call('HSETNX', KEYS[1], ip, uid) == 1 then\n"
    "      redis.call('HSET', KEYS[2], 'ip', ip)\n"
    "      redis.call('HSET', KEYS[2], 'cidr', cidr)\n"
    "      redis.call('HSET', KEYS[2], 'owner', owner)\n"
    "      redis.call('SADD', KEYS[4], uid)\n"
    "      local nxt = off + 1\n"
    "      if nxt > last then nxt = first end\n"
    "      redis.call('SET', KEYS[3], nxt)\n"
    "      return {3, ip}\n"
    "    end\n"
    "  end\n"
    "end\n"
    "return {1, tostring(redis.call('HLEN', KEYS[1]))}\n";

// KEYS: pod lease, this owner's set. ARGV: uid, owner.
// Returns 1 freed, 0 nothing held, 2 held by another owner.
static const char s_release_lua[] =
    "local f = redis.call('HMGET', KEYS[1], 'ip', 'cidr', 'owner')\n"
    "local ip, cidr, owner = f[1], f[2], f[3]\n"
    "if not ip then\n"
    "  redis.call('DEL', KEYS[1])\n"
    "  redis.call('SREM', KEYS[2], ARGV[1])\n"
    "  return 0\n"
    "end\n"
    "if owner and owner ~= ARGV[2] then return 2 end\n"
    "if cidr then\n"
    "  local k = 'vmlet:ipam:' .. cidr\n"
    "  if redis.call('HGET', k, ip) == ARGV[1] then redis.call('HDEL', k, ip) end\n"
    "end\n"
    "redis.call('SREM', KEYS[2], ARGV[1])\n"
    "redis.call('DEL', KEYS[1])\n"
    "return 1\n";

ipam_t *ipam_new(vmlet_store_t *store, const ipam_cidr_t *cidr, const char *owner, vmlet_err_t *err)
{
    if (!ipam_valid_name(owner)) {
        vmlet_err_set(err, "ipam: owner \"%s\" must be 1-128 characters of [A-Za-z0-9._-]",
                      owner ? owner : "");
        return NULL;
    }
    ipam_t *self = vmlet_xcalloc(1, sizeof *self);
    self->store = store;
    self->cidr = *cidr;
    ipam_cidr_format(cidr, self->cidr_text);
    self->owner = vmlet_xstrdup(owner);
    return self;
}

void ipam_destroy(ipam_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    ipam_t *self = *self_p;
    free(self->owner);
    free(self);
    *self_p = NULL;
}

static int s_check_uid(const char *uid, vmlet_err_t *err)
{
    if (!ipam_valid_name(uid))
        return vmlet_err_set(err, "pod uid \"%s\" must be 1-128 characters of [A-Za-z0-9._-]",
                             uid ? uid : "");
    return 0;
}

int ipam_acquire(ipam_t *self, const char *uid, uint32_t *addr, bool *fresh, vmlet_err_t *err)
{
    if (s_check_uid(uid, err) < 0)
        return -1;
    char k_ipam[64], k_pod[192], k_next[64], k_owner[192];
    snprintf(k_ipam, sizeof k_ipam, "vmlet:ipam:%s", self->cidr_text);
    snprintf(k_pod, sizeof k_pod, "vmlet:ipam-pod:%s", uid);
    snprintf(k_next, sizeof k_next, "vmlet:ipam-next:%s", self->cidr_text);
    snprintf(k_owner, sizeof k_owner, "vmlet:ipam-owner:%s", self->owner);
    char a_net[16], a_last[16], a_gw[16];
    snprintf(a_net, sizeof a_net, "%" PRIu32, self->cidr.network);
    snprintf(a_last, sizeof a_last, "%" PRIu32, ipam_last(&self->cidr) - self->cidr.network);
    snprintf(a_gw, sizeof a_gw, "%" PRIu32, self->cidr.gateway - self->cidr.network);
    const char *argv[] = {
        "EVAL",          s_acquire_lua, "4",         k_ipam, k_pod, k_next, k_owner,
        self->cidr_text, uid,           self->owner, a_net,  "1",   a_last, a_gw};
    size_t lens[sizeof argv / sizeof *argv];
    for (size_t i = 0; i < sizeof argv / sizeof *argv; i++)
        lens[i] = strlen(argv[i]);
    redisReply *r =
        vmlet_store_commandv(self->store, err, (int)(sizeof argv / sizeof *argv), argv, lens);
    if (!r)
        return vmlet_err_wrap(err, "ipam %s: allocating for pod %s", self->cidr_text, uid);
    int rc = -1;
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 2 ||
        r->element[0]->type != REDIS_REPLY_INTEGER || r->element[1]->type != REDIS_REPLY_STRING) {
        vmlet_err_set(err, "ipam %s: allocating for pod %s: unexpected reply from Redis",
                      self->cidr_text, uid);
    } else if (r->element[0]->integer == 1) {
        vmlet_err_set(err, "ipam %s: no free address for pod %s (%s of %" PRIu32 " in use)",
                      self->cidr_text, uid, r->element[1]->str, ipam_capacity(&self->cidr));
        err->code = ENOSPC;
    } else if (r->element[0]->integer == 2) {
        vmlet_err_set(err, "ipam %s: pod %s holds %s from %s (another configuration)",
                      self->cidr_text, uid, r->element[1]->str,
                      r->elements > 2 && r->element[2]->str ? r->element[2]->str : "?");
        err->code = EEXIST;
    } else if (ipam_addr_parse(r->element[1]->str, addr, err) < 0 ||
               !ipam_assignable(&self->cidr, *addr)) {
        vmlet_err_set(err, "ipam %s: Redis holds %s for pod %s, which is not assignable here",
                      self->cidr_text, r->element[1]->str, uid);
    } else {
        if (fresh)
            *fresh = r->element[0]->integer == 3;
        rc = 0;
    }
    freeReplyObject(r);
    return rc;
}

int ipam_lookup(ipam_t *self, const char *uid, uint32_t *addr, bool *ours, vmlet_err_t *err)
{
    if (s_check_uid(uid, err) < 0)
        return -1;
    redisReply *r =
        vmlet_store_command(self->store, err, "HMGET vmlet:ipam-pod:%s ip cidr owner", uid);
    if (!r)
        return vmlet_err_wrap(err, "ipam: looking up pod %s", uid);
    int rc = 0;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
        r->element[0]->type == REDIS_REPLY_STRING && r->element[1]->type == REDIS_REPLY_STRING &&
        !strcmp(r->element[1]->str, self->cidr_text)) {
        if (ipam_addr_parse(r->element[0]->str, addr, err) < 0) {
            rc = vmlet_err_wrap(err, "ipam: lease of pod %s", uid);
        } else {
            rc = 1;
            if (ours)
                *ours = r->element[2]->type == REDIS_REPLY_STRING &&
                        !strcmp(r->element[2]->str, self->owner);
        }
    }
    freeReplyObject(r);
    return rc;
}

int ipam_release(ipam_t *self, const char *uid, vmlet_err_t *err)
{
    if (s_check_uid(uid, err) < 0)
        return -1;
    char k_pod[192], k_owner[192];
    snprintf(k_pod, sizeof k_pod, "vmlet:ipam-pod:%s", uid);
    snprintf(k_owner, sizeof k_owner, "vmlet:ipam-owner:%s", self->owner);
    const char *argv[] = {"EVAL", s_release_lua, "2", k_pod, k_owner, uid, self->owner};
    size_t lens[sizeof argv / sizeof *argv];
    for (size_t i = 0; i < sizeof argv / sizeof *argv; i++)
        lens[i] = strlen(argv[i]);
    redisReply *r =
        vmlet_store_commandv(self->store, err, (int)(sizeof argv / sizeof *argv), argv, lens);
    if (!r)
        return vmlet_err_wrap(err, "ipam: freeing the address of pod %s", uid);
    int rc = r->type == REDIS_REPLY_INTEGER ? (int)r->integer : -1;
    if (rc < 0)
        vmlet_err_set(err, "ipam: freeing the address of pod %s: unexpected reply from Redis", uid);
    freeReplyObject(r);
    return rc;
}

int ipam_list_owned(ipam_t *self, char ***uids, size_t *n, vmlet_err_t *err)
{
    *uids = NULL;
    *n = 0;
    redisReply *r =
        vmlet_store_command(self->store, err, "SMEMBERS vmlet:ipam-owner:%s", self->owner);
    if (!r)
        return vmlet_err_wrap(err, "ipam: listing the leases of %s", self->owner);
    if (r->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(r);
        return vmlet_err_set(err, "ipam: listing the leases of %s: unexpected reply", self->owner);
    }
    *uids = vmlet_xcalloc(r->elements + 1, sizeof **uids);
    for (size_t i = 0; i < r->elements; i++)
        if (r->element[i]->type == REDIS_REPLY_STRING)
            (*uids)[(*n)++] = vmlet_xstrdup(r->element[i]->str);
    freeReplyObject(r);
    return 0;
}
