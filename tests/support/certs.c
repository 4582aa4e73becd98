#include "certs.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

static int fail(const char *what)
{
    fprintf(stderr, "certs: %s failed\n", what);
    ERR_print_errors_fp(stderr);
    return -1;
}

static X509 *read_cert(const char *path)
{
    FILE *f = fopen(path, "r");
    X509 *x = NULL;
    if (f != NULL) {
        x = PEM_read_X509(f, NULL, NULL, NULL);
        fclose(f);
    }
    return x;
}

static EVP_PKEY *read_key(const char *path)
{
    FILE *f = fopen(path, "r");
    EVP_PKEY *k = NULL;
    if (f != NULL) {
        k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
        fclose(f);
    }
    return k;
}

/* One v3 extension from its config text, issued by `issuer` (itself when self-signed). */
static int add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (e == NULL)
        return -1;
    int r = X509_add_ext(x, e, -1) == 1 ? 0 : -1;
    X509_EXTENSION_free(e);
    return r;
}

static int write_pem(const char *path, X509 *x, EVP_PKEY *k)
{
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return -1;
    int ok = x != NULL ? PEM_write_X509(f, x) : PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL);
    return (fclose(f) == 0 && ok == 1) ? 0 : -1;
}

int th_cert_issue(const th_cert_spec_t *s)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    X509 *ica = NULL;
    EVP_PKEY *ikey = NULL;
    int r = -1;

    if (key == NULL || x == NULL) {
        fail("key generation");
        goto out;
    }
    if (s->issuer_cert != NULL) {
        ica = read_cert(s->issuer_cert);
        ikey = read_key(s->issuer_key);
        if (ica == NULL || ikey == NULL) {
            fail("reading the issuer");
            goto out;
        }
    }
    unsigned char serial[16];
    if (RAND_bytes(serial, sizeof(serial)) != 1)
        goto out;
    serial[0] &= 0x7f; /* positive */
    BIGNUM *bn = BN_bin2bn(serial, sizeof(serial), NULL);
    if (bn == NULL || BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) == NULL) {
        BN_free(bn);
        goto out;
    }
    BN_free(bn);
    X509_set_version(x, 2);
    X509_gmtime_adj(X509_getm_notBefore(x), s->not_before_s);
    X509_gmtime_adj(X509_getm_notAfter(x), s->not_after_s);
    X509_set_pubkey(x, key);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"tether tests", -1, -1, 0);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)s->cn, -1, -1, 0);
    X509_set_issuer_name(x, ica != NULL ? X509_get_subject_name(ica) : name);
    X509 *issuer = ica != NULL ? ica : x;
    if (add_ext(x, issuer, NID_subject_key_identifier, "hash") != 0 ||
        add_ext(x, issuer, NID_authority_key_identifier, "keyid:always") != 0) {
        fail("key identifiers");
        goto out;
    }
    if (s->ca) {
        if (add_ext(x, issuer, NID_basic_constraints, "critical,CA:TRUE") != 0 ||
            add_ext(x, issuer, NID_key_usage, "critical,keyCertSign,cRLSign") != 0) {
            fail("CA extensions");
            goto out;
        }
    } else {
        if (add_ext(x, issuer, NID_basic_constraints, "critical,CA:FALSE") != 0 ||
            add_ext(x, issuer, NID_key_usage, "critical,digitalSignature") != 0 ||
            add_ext(x, issuer, NID_ext_key_usage, s->client ? "clientAuth" : "serverAuth") != 0) {
            fail("leaf extensions");
            goto out;
        }
    }
    if (s->sans != NULL && add_ext(x, issuer, NID_subject_alt_name, s->sans) != 0) {
        fail("subjectAltName");
        goto out;
    }
    if (X509_sign(x, ikey != NULL ? ikey : key, EVP_sha256()) == 0) {
        fail("signing");
        goto out;
    }
    if (write_pem(s->cert_out, x, NULL) != 0 || write_pem(s->key_out, NULL, key) != 0) {
        fail("writing the PEM files");
        goto out;
    }
    r = 0;
out:
    X509_free(x);
    X509_free(ica);
    EVP_PKEY_free(key);
    EVP_PKEY_free(ikey);
    return r;
}

static void pair(th_certs_t *c, th_pair_t *p, const char *name)
{
    snprintf(p->cert, sizeof(p->cert), "%s/%.40s.pem", c->dir, name);
    snprintf(p->key, sizeof(p->key), "%s/%.40s.key", c->dir, name);
}

static int issue(const th_pair_t *p, const th_pair_t *by, const char *cn, const char *sans,
                 bool ca, bool client, long nb, long na)
{
    th_cert_spec_t s = {.cn = cn, .sans = sans, .ca = ca, .client = client,
                        .not_before_s = nb, .not_after_s = na,
                        .issuer_cert = by != NULL ? by->cert : NULL,
                        .issuer_key = by != NULL ? by->key : NULL,
                        .cert_out = p->cert, .key_out = p->key};
    return th_cert_issue(&s);
}

static int concat(const char *out, const char *a, const char *b)
{
    FILE *o = fopen(out, "w");
    if (o == NULL)
        return -1;
    const char *in[2] = {a, b};
    for (int i = 0; i < 2; i++) {
        FILE *f = fopen(in[i], "r");
        char buf[4096];
        size_t n;
        if (f == NULL) {
            fclose(o);
            return -1;
        }
        while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
            fwrite(buf, 1, n, o);
        fclose(f);
    }
    return fclose(o) == 0 ? 0 : -1;
}

int th_certs_make(th_certs_t *c)
{
    const char *tmp = getenv("TMPDIR");
    const long day = 86400;
    const char *local = "DNS:localhost,IP:127.0.0.1";

    memset(c, 0, sizeof(*c));
    snprintf(c->dir, sizeof(c->dir), "%s/tt-certs-XXXXXX", tmp != NULL ? tmp : "/tmp");
    if (mkdtemp(c->dir) == NULL)
        return -1;
    pair(c, &c->ca, "ca");
    pair(c, &c->ca2, "ca2");
    pair(c, &c->server, "server");
    pair(c, &c->server2, "server2");
    pair(c, &c->other, "other");
    pair(c, &c->expired, "expired");
    pair(c, &c->future, "future");
    pair(c, &c->rogue, "rogue");
    pair(c, &c->client, "client");
    pair(c, &c->client2, "client2");
    snprintf(c->ca_both, sizeof(c->ca_both), "%s/ca-both.pem", c->dir);
    if (issue(&c->ca, NULL, "tether test CA", NULL, true, false, -day, 30 * day) != 0 ||
        issue(&c->ca2, NULL, "untrusted CA", NULL, true, false, -day, 30 * day) != 0 ||
        issue(&c->server, &c->ca, "localhost", local, false, false, -day, 30 * day) != 0 ||
        issue(&c->server2, &c->ca, "renewed.localhost", local, false, false, -day, 30 * day) != 0 ||
        issue(&c->other, &c->ca, "other.test", "DNS:other.test,DNS:*.wild.test", false, false,
              -day, 30 * day) != 0 ||
        issue(&c->expired, &c->ca, "expired.localhost", local, false, false, -3 * day, -day) != 0 ||
        issue(&c->future, &c->ca, "future.localhost", local, false, false, day, 30 * day) != 0 ||
        issue(&c->rogue, &c->ca2, "localhost", local, false, false, -day, 30 * day) != 0 ||
        issue(&c->client, &c->ca, "client.test", NULL, false, true, -day, 30 * day) != 0 ||
        issue(&c->client2, &c->ca2, "intruder.test", NULL, false, true, -day, 30 * day) != 0 ||
        concat(c->ca_both, c->ca.cert, c->ca2.cert) != 0)
        return -1;
    return 0;
}

void th_certs_remove(th_certs_t *c)
{
    DIR *d;
    struct dirent *e;
    char path[TH_CERT_PATH + 256];

    if (c->dir[0] == '\0' || (d = opendir(c->dir)) == NULL)
        return;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", c->dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(c->dir);
    c->dir[0] = '\0';
}
