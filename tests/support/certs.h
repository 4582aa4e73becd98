/* A certificate factory for the TLS tests (OpenSSL 3's libcrypto, no `openssl`
 * command): EC P-256 keys, certificates written as PEM files into a temporary
 * directory made per test. th_certs_make() writes the standard set the tests use;
 * th_cert_issue() makes any other one. */
#ifndef TT_TEST_CERTS_H
#define TT_TEST_CERTS_H

#include <stdbool.h>

#define TH_CERT_PATH 300

/* One certificate to issue. Validity is given relative to now, in seconds. */
typedef struct th_cert_spec {
    const char *cn;          /* subject common name */
    const char *sans;        /* subjectAltName, "DNS:localhost,IP:127.0.0.1"; NULL: none */
    bool ca;                 /* a CA (basicConstraints CA:TRUE, keyCertSign) */
    bool client;             /* extendedKeyUsage clientAuth (else serverAuth) */
    long not_before_s;       /* e.g. -3600 */
    long not_after_s;        /* e.g. 86400 */
    const char *issuer_cert; /* PEM files of the signing CA; NULL: self-signed */
    const char *issuer_key;
    const char *cert_out;    /* where to write the certificate and its key */
    const char *key_out;
} th_cert_spec_t;

/* Issue one certificate. Returns 0 or -1 (with a message on stderr). */
int th_cert_issue(const th_cert_spec_t *spec);

/* A certificate file and its key. */
typedef struct th_pair {
    char cert[TH_CERT_PATH];
    char key[TH_CERT_PATH];
} th_pair_t;

/* The standard set, all under `dir` (a fresh mkdtemp directory). */
typedef struct th_certs {
    char dir[200];
    th_pair_t ca;       /* the trusted CA ("tether test CA") */
    th_pair_t ca2;      /* a second CA nobody trusts ("untrusted CA") */
    th_pair_t server;   /* CN localhost; SAN DNS:localhost, IP:127.0.0.1; by ca */
    th_pair_t server2;  /* CN renewed.localhost, same SANs, by ca (a renewal) */
    th_pair_t other;    /* CN other.test; SAN DNS:other.test, DNS:*.wild.test; by ca */
    th_pair_t expired;  /* localhost SANs, notAfter a day ago; by ca */
    th_pair_t future;   /* localhost SANs, notBefore in a day; by ca */
    th_pair_t rogue;    /* localhost SANs, signed by ca2 */
    th_pair_t client;   /* CN client.test, clientAuth, by ca */
    th_pair_t client2;  /* CN intruder.test, clientAuth, by ca2 */
    char ca_both[TH_CERT_PATH]; /* ca and ca2 in one file */
} th_certs_t;

/* Make the directory and every file of the set (a few milliseconds). 0 or -1. */
int th_certs_make(th_certs_t *c);
/* Remove the files and the directory. */
void th_certs_remove(th_certs_t *c);

#endif
