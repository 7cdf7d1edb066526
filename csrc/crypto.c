/* crypto.c: what OAuth 2.1 needs from OpenSSL's libcrypto (which libcurl
 * already brings into the process): SHA-256 (PKCE S256), bytes from the
 * CSPRNG (code verifiers, state, JWT ids), base64 and base64url, and JWS
 * signatures (ES256, RS256) for private_key_jwt client authentication.
 *
 *   core.sha256(s)                 -> 32 raw bytes
 *   core.random_bytes(n)           -> n bytes (1..1024) from RAND_bytes
 *   core.base64url(s)              -> unpadded base64url text
 *   core.base64(s)                 -> padded standard base64 text
 *   core.jws_sign(pem, alg, input) -> raw signature bytes (ES256: R||S,
 *                                     64 bytes; RS256: PKCS#1 v1.5), or
 *                                     nil, message
 *
 * Every input may be a string or a favcrm.Secret (a private key, a client
 * secret). Buffers that held key material are wiped; OpenSSL objects are
 * freed before any Lua value is built, so an error raised (memory) unwinds
 * through no C resource. */
#include "favcrm.h"
#include "secret.h"

#include <string.h>

#include <openssl/bio.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#define CRYPTO_MAX_RANDOM 1024
#define CRYPTO_MAX_INPUT (16 * 1024 * 1024)

/* The bytes of argument idx: a favcrm.Secret's or a string's. Raises a
 * bad-argument error for anything else. */
static const char *bytes_arg(lua_State *L, int idx, size_t *len) {
  const char *p = fav_secret_get(L, idx, len);
  if (p) return p;
  if (lua_type(L, idx) != LUA_TSTRING) {
    luaL_argerror(L, idx, "string or favcrm.secret expected");
    return NULL;
  }
  return lua_tolstring(L, idx, len);
}

/* core.sha256(s) -> 32 raw bytes. Raises on a bad argument only. */
static int crypto_sha256(lua_State *L) {
  size_t n;
  const char *s = bytes_arg(L, 1, &n);
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256((const unsigned char *)s, n, md);
  lua_pushlstring(L, (const char *)md, sizeof md);
  fav_wipe(md, sizeof md);
  return 1;
}

/* core.random_bytes(n) -> n bytes from the CSPRNG, or raises when it
 * cannot give them (never returns weak bytes). */
static int crypto_random_bytes(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  unsigned char buf[CRYPTO_MAX_RANDOM];
  luaL_argcheck(L, n >= 1 && n <= CRYPTO_MAX_RANDOM, 1, "count must be within 1..1024");
  if (RAND_bytes(buf, (int)n) != 1) return luaL_error(L, "favcrm: the system's random generator failed");
  lua_pushlstring(L, (const char *)buf, (size_t)n);
  fav_wipe(buf, sizeof buf);
  return 1;
}

/* Pushes the base64 (url = 0, padded) or base64url (url = 1, unpadded)
 * text of s, written into a scratch userdata first (Lua owns its memory,
 * so a memory error leaks nothing). Can raise (memory). */
static void push_b64(lua_State *L, const unsigned char *s, size_t n, int url) {
  char *out = (char *)lua_newuserdata(L, FAV_B64_LEN(n, url) + 1);
  lua_pushlstring(L, out, fav_b64(out, s, n, url));
  lua_remove(L, -2);
}

/* core.base64url(s) -> unpadded base64url (RFC 4648 section 5). */
static int crypto_base64url(lua_State *L) {
  size_t n;
  const char *s = bytes_arg(L, 1, &n);
  luaL_argcheck(L, n <= CRYPTO_MAX_INPUT, 1, "longer than 16 MiB");
  push_b64(L, (const unsigned char *)s, n, 1);
  return 1;
}

/* core.base64(s) -> padded standard base64 (RFC 4648 section 4). */
static int crypto_base64(lua_State *L) {
  size_t n;
  const char *s = bytes_arg(L, 1, &n);
  luaL_argcheck(L, n <= CRYPTO_MAX_INPUT, 1, "longer than 16 MiB");
  push_b64(L, (const unsigned char *)s, n, 0);
  return 1;
}

/* Signs input with key as alg into out (room: *outlen), *outlen set to the
 * signature's length. Returns NULL or a static message. Owns and frees
 * every OpenSSL object it makes. Never raises. */
static const char *jws_sign(const char *pem, size_t pemlen, int es256, const unsigned char *input,
                            size_t inlen, unsigned char *out, size_t *outlen) {
  BIO *bio = NULL;
  EVP_PKEY *key = NULL;
  EVP_MD_CTX *ctx = NULL;
  unsigned char *der = NULL;
  size_t derlen = 0;
  const char *err = NULL;
  int type;
  bio = BIO_new_mem_buf(pem, (int)pemlen);
  if (!bio) { err = "out of memory"; goto done; }
  key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
  if (!key) { err = "private_key_pem is not a PEM private key (PKCS#8 or traditional, unencrypted)"; goto done; }
  type = EVP_PKEY_base_id(key);
  if (es256 && type != EVP_PKEY_EC) { err = "ES256 needs an EC (P-256) private key"; goto done; }
  if (!es256 && type != EVP_PKEY_RSA) { err = "RS256 needs an RSA private key"; goto done; }
  if (es256 && EVP_PKEY_bits(key) != 256) { err = "ES256 needs a P-256 key"; goto done; }
  if (!es256 && EVP_PKEY_bits(key) < 2048) { err = "RS256 needs an RSA key of at least 2048 bits"; goto done; }
  ctx = EVP_MD_CTX_new();
  if (!ctx) { err = "out of memory"; goto done; }
  if (EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, key) != 1 ||
      EVP_DigestSign(ctx, NULL, &derlen, input, inlen) != 1) {
    err = "the signature could not be made";
    goto done;
  }
  der = OPENSSL_malloc(derlen);
  if (!der) { err = "out of memory"; goto done; }
  if (EVP_DigestSign(ctx, der, &derlen, input, inlen) != 1) { err = "the signature could not be made"; goto done; }
  if (es256) {
    /* JWS wants R||S, 32 bytes each (RFC 7518 section 3.4), not DER */
    const unsigned char *p = der;
    ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &p, (long)derlen);
    const BIGNUM *r, *s;
    if (!sig) { err = "the signature could not be made"; goto done; }
    ECDSA_SIG_get0(sig, &r, &s);
    if (BN_bn2binpad(r, out, 32) != 32 || BN_bn2binpad(s, out + 32, 32) != 32) err = "the signature could not be made";
    ECDSA_SIG_free(sig);
    *outlen = 64;
  } else {
    if (derlen > *outlen) { err = "the RSA key is too large (over 8192 bits)"; goto done; }
    memcpy(out, der, derlen);
    *outlen = derlen;
  }
done:
  if (der) OPENSSL_free(der);
  if (ctx) EVP_MD_CTX_free(ctx);
  if (key) EVP_PKEY_free(key);
  if (bio) BIO_free(bio);
  ERR_clear_error();
  return err;
}

/* core.jws_sign(pem, alg, input) -> signature bytes, or nil, message.
 * alg is "ES256" or "RS256" (anything else raises). */
static int crypto_jws_sign(lua_State *L) {
  size_t pemlen, inlen, outlen = 1024;
  const char *pem = bytes_arg(L, 1, &pemlen);
  const char *alg = luaL_checkstring(L, 2);
  const char *input = luaL_checklstring(L, 3, &inlen);
  unsigned char out[1024];
  const char *err;
  int es256 = strcmp(alg, "ES256") == 0;
  luaL_argcheck(L, es256 || strcmp(alg, "RS256") == 0, 2, "\"ES256\" or \"RS256\" expected");
  luaL_argcheck(L, pemlen <= 64 * 1024, 1, "longer than 64 KiB");
  err = jws_sign(pem, pemlen, es256, (const unsigned char *)input, inlen, out, &outlen);
  if (err) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  lua_pushlstring(L, (const char *)out, outlen);
  return 1;
}

static const luaL_Reg crypto_funcs[] = {
  {"sha256", crypto_sha256},
  {"random_bytes", crypto_random_bytes},
  {"base64url", crypto_base64url},
  {"base64", crypto_base64},
  {"jws_sign", crypto_jws_sign},
  {NULL, NULL}
};

/* Takes the module table at the top; adds the functions above. Leaves the
 * stack as found. Can raise (memory). */
int fav_crypto_open(lua_State *L) {
  luaL_setfuncs(L, crypto_funcs, 0);
  return 0;
}
