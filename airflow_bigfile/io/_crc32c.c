/* CRC32C (Castagnoli, reflected polynomial 0x82f63b78), as iSCSI, ext4 and the crc32c
 * package compute it: the CRC instruction of SSE 4.2 or ARMv8 where the CPU has one, else
 * tables (slicing by eight).
 *
 * The instruction's latency is three times its throughput, so long buffers are cut into
 * three runs computed side by side, and the three CRCs are joined by shifting the first
 * two over the lengths that follow them: the shift applies a fixed number of zero bytes,
 * a linear map over GF(2) precomputed as four byte tables per length (the method of Mark
 * Adler's crc32c.c).
 *
 * The GIL is released over long buffers, so worker threads checksum blocks in parallel.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <nmmintrin.h>
#define HW_X86 1
#elif defined(__aarch64__) && (defined(__GNUC__) || defined(__clang__)) && defined(__linux__)
#include <arm_acle.h>
#include <sys/auxv.h>
#define HW_ARM 1
#ifndef HWCAP_CRC32
#define HWCAP_CRC32 (1 << 7)
#endif
#endif

#define POLY 0x82f63b78u
#define LONG_RUN 8192
#define SHORT_RUN 256
#define NOGIL_FROM 65536  /* shorter buffers are checksummed holding the GIL */

static uint32_t table[8][256];             /* slicing by eight */
static uint32_t long_shift[4][256];        /* LONG_RUN zero bytes, byte by byte */
static uint32_t short_shift[4][256];       /* SHORT_RUN zero bytes */
static int hardware;

static uint32_t
gf2_times(const uint32_t *mat, uint32_t vec)
{
    uint32_t sum = 0;

    for (; vec; vec >>= 1, mat++)
        if (vec & 1)
            sum ^= *mat;
    return sum;
}

static void
gf2_square(uint32_t *square, const uint32_t *mat)
{
    int n;

    for (n = 0; n < 32; n++)
        square[n] = gf2_times(mat, mat[n]);
}

/* The operator that appends len zero bytes (len a power of two) to a raw CRC. */
static void
zeros_operator(uint32_t *even, size_t len)
{
    uint32_t odd[32], row = 1;
    int n;

    odd[0] = POLY;  /* one zero bit */
    for (n = 1; n < 32; n++, row <<= 1)
        odd[n] = row;
    gf2_square(even, odd);  /* two zero bits */
    gf2_square(odd, even);  /* four */
    /* each square doubles: the first gives one zero byte */
    for (;;) {
        gf2_square(even, odd);
        len >>= 1;
        if (len == 0)
            return;
        gf2_square(odd, even);
        len >>= 1;
        if (len == 0)
            break;
    }
    memcpy(even, odd, sizeof(odd));
}

static void
shift_tables(uint32_t shift[4][256], size_t len)
{
    uint32_t op[32];
    uint32_t n;

    zeros_operator(op, len);
    for (n = 0; n < 256; n++) {
        shift[0][n] = gf2_times(op, n);
        shift[1][n] = gf2_times(op, n << 8);
        shift[2][n] = gf2_times(op, n << 16);
        shift[3][n] = gf2_times(op, n << 24);
    }
}

static inline uint32_t
shifted(uint32_t shift[4][256], uint32_t crc)
{
    return shift[0][crc & 0xff] ^ shift[1][(crc >> 8) & 0xff]
           ^ shift[2][(crc >> 16) & 0xff] ^ shift[3][crc >> 24];
}

static void
init_tables(void)
{
    uint32_t n, crc;
    int k;

    for (n = 0; n < 256; n++) {
        crc = n;
        for (k = 0; k < 8; k++)
            crc = crc & 1 ? (crc >> 1) ^ POLY : crc >> 1;
        table[0][n] = crc;
    }
    for (n = 0; n < 256; n++) {
        crc = table[0][n];
        for (k = 1; k < 8; k++) {
            crc = table[0][crc & 0xff] ^ (crc >> 8);
            table[k][n] = crc;
        }
    }
    shift_tables(long_shift, LONG_RUN);
    shift_tables(short_shift, SHORT_RUN);
}

static uint64_t
load64(const unsigned char *p)
{
    uint64_t v;

    memcpy(&v, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

static uint32_t
crc_tables(uint32_t crc, const unsigned char *p, size_t len)
{
    uint64_t w;

    crc = ~crc;
    while (len && ((uintptr_t)p & 7)) {
        crc = table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
        len--;
    }
    while (len >= 8) {
        w = load64(p) ^ crc;
        crc = table[7][w & 0xff] ^ table[6][(w >> 8) & 0xff]
              ^ table[5][(w >> 16) & 0xff] ^ table[4][(w >> 24) & 0xff]
              ^ table[3][(w >> 32) & 0xff] ^ table[2][(w >> 40) & 0xff]
              ^ table[1][(w >> 48) & 0xff] ^ table[0][w >> 56];
        p += 8;
        len -= 8;
    }
    while (len--)
        crc = table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

#if defined(HW_X86) || defined(HW_ARM)
#if defined(HW_X86)
#define HW_ATTR __attribute__((target("sse4.2")))
#define CRC8(c, b) _mm_crc32_u8((uint32_t)(c), (b))
#define CRC64(c, w) _mm_crc32_u64((c), (w))
typedef uint64_t reg_t;  /* the instruction's 64-bit form: no narrowing in the chain */
#else
#define HW_ATTR __attribute__((target("+crc")))
#define CRC8(c, b) __crc32cb((c), (b))
#define CRC64(c, w) __crc32cd((c), (w))
typedef uint32_t reg_t;
#endif

/* Three runs of ``run`` bytes side by side, joined by ``shift`` (``run`` zero bytes). */
#define THREE_RUNS(run, shift)                                                  \
    while (len >= 3 * (run)) {                                                  \
        reg_t c1 = 0, c2 = 0;                                                   \
        const unsigned char *end = p + (run);                                   \
        do {                                                                    \
            c0 = CRC64(c0, load64(p));                                          \
            c1 = CRC64(c1, load64(p + (run)));                                  \
            c2 = CRC64(c2, load64(p + 2 * (run)));                              \
            p += 8;                                                             \
        } while (p < end);                                                      \
        c0 = shifted(shift, (uint32_t)c0) ^ c1;                                 \
        c0 = shifted(shift, (uint32_t)c0) ^ c2;                                 \
        p += 2 * (run);                                                         \
        len -= 3 * (run);                                                       \
    }

HW_ATTR static uint32_t
crc_hardware(uint32_t crc, const unsigned char *p, size_t len)
{
    reg_t c0 = (uint32_t)~crc;

    while (len && ((uintptr_t)p & 7)) {
        c0 = CRC8(c0, *p++);
        len--;
    }
    THREE_RUNS(LONG_RUN, long_shift)
    THREE_RUNS(SHORT_RUN, short_shift)
    while (len >= 8) {
        c0 = CRC64(c0, load64(p));
        p += 8;
        len -= 8;
    }
    while (len--)
        c0 = CRC8(c0, *p++);
    return ~(uint32_t)c0;
}
#endif

static uint32_t
crc_any(uint32_t crc, const unsigned char *p, size_t len)
{
#if defined(HW_X86) || defined(HW_ARM)
    if (hardware)
        return crc_hardware(crc, p, len);
#endif
    return crc_tables(crc, p, len);
}

typedef uint32_t (*crc_fn)(uint32_t, const unsigned char *, size_t);

static PyObject *
checksum(PyObject *args, const char *format, crc_fn fn)
{
    Py_buffer buf;
    PyObject *start = NULL;
    unsigned long value = 0;
    uint32_t crc;

    if (!PyArg_ParseTuple(args, format, &buf, &start))
        return NULL;
    if (start != NULL) {
        value = PyLong_AsUnsignedLong(start);
        if ((value == (unsigned long)-1 && PyErr_Occurred()) || value > 0xffffffffUL) {
            PyBuffer_Release(&buf);
            PyErr_Clear();
            PyErr_SetString(PyExc_ValueError,
                            "the CRC to continue from must be an int in 0..2**32-1");
            return NULL;
        }
    }
    if (buf.len >= NOGIL_FROM) {
        Py_BEGIN_ALLOW_THREADS
        crc = fn((uint32_t)value, buf.buf, (size_t)buf.len);
        Py_END_ALLOW_THREADS
    } else {
        crc = fn((uint32_t)value, buf.buf, (size_t)buf.len);
    }
    PyBuffer_Release(&buf);
    return PyLong_FromUnsignedLong(crc);
}

PyDoc_STRVAR(crc32c_doc,
"crc32c(data, value=0, /) -> int\n\n"
"The CRC32C of data (any contiguous buffer), continuing from value: the CRC of the\n"
"bytes before it, so blocks chain.");

static PyObject *
crc_crc32c(PyObject *module, PyObject *args)
{
    return checksum(args, "y*|O:crc32c", crc_any);
}

PyDoc_STRVAR(crc32c_tables_doc,
"crc32c_tables(data, value=0, /) -> int\n\n"
"crc32c computed from tables, as on a CPU without a CRC instruction.");

static PyObject *
crc_crc32c_tables(PyObject *module, PyObject *args)
{
    return checksum(args, "y*|O:crc32c_tables", crc_tables);
}

static PyMethodDef methods[] = {
    {"crc32c", crc_crc32c, METH_VARARGS, crc32c_doc},
    {"crc32c_tables", crc_crc32c_tables, METH_VARARGS, crc32c_tables_doc},
    {NULL, NULL, 0, NULL},
};

static int
exec_module(PyObject *module)
{
    init_tables();
#if defined(HW_X86)
    __builtin_cpu_init();
    hardware = __builtin_cpu_supports("sse4.2") != 0;
#elif defined(HW_ARM)
    hardware = (getauxval(AT_HWCAP) & HWCAP_CRC32) != 0;
#endif
    return PyModule_AddIntConstant(module, "hardware", hardware);
}

static PyModuleDef_Slot slots[] = {
    {Py_mod_exec, exec_module},
    {0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "airflow_bigfile.io._crc32c",
    .m_doc = "CRC32C with the CPU's CRC instruction where it has one, without the GIL.",
    .m_size = 0,
    .m_methods = methods,
    .m_slots = slots,
};

PyMODINIT_FUNC
PyInit__crc32c(void)
{
    return PyModuleDef_Init(&module);
}
