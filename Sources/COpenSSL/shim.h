// The OpenSSL headers Swift imports: EVP (ed25519 keys, signatures), RAND, errors, and SSL for TLS.
#ifndef COPENSSL_SHIM_H
#define COPENSSL_SHIM_H

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

#endif
