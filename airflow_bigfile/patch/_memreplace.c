/* Literal find and replace over any contiguous buffer, with the semantics of bytes.replace
 * and bytes.count (leftmost, non-overlapping matches, the scan going on after each match);
 * and the search for a long run of bytes from one set that bounds a regex's matches.
 *
 * The buffers are held (Py_buffer) for the whole call, so a bytearray cannot be resized
 * under it, and the GIL is released while scanning and copying, so worker threads patching
 * different blocks run side by side. */

#define _GNU_SOURCE 1
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#ifdef _WIN32
/* No memmem in the C runtime: the first byte by memchr, the rest by memcmp (unlike glibc's,
 * up to len(find) compared bytes a position on crafted near-miss runs). */
static void *
memmem(const void *hay, size_t n, const void *needle, size_t m)
{
    const char *p = hay, *end = p + n, *f = needle;

    if (m == 0 || m > n)
        return NULL;
    while ((p = memchr(p, f[0], (size_t)(end - p) - m + 1)) != NULL) {
        if (memcmp(p, f, m) == 0)
            return (void *)p;
        p++;
        if ((size_t)(end - p) < m)
            break;
    }
    return NULL;
}
#endif

/* One pattern searched for through one buffer. Most matches are found by memchr on the
 * pattern's rarest byte (by a sample of the buffer) and a memcmp of the candidate: a few
 * times faster than a memmem call per match, whose set-up (a shift table) costs as much as
 * scanning the ~100 bytes between dense matches. Where candidates keep failing (a byte
 * common in this buffer after all, or runs crafted to be near misses) the search goes on
 * with memmem, so such input costs at most about what memmem alone would. */
typedef struct {
    const char *base;    /* the buffer's first byte */
    const char *f;       /* the pattern */
    Py_ssize_t m;
    Py_ssize_t rare;     /* the index in f of the byte memchr looks for */
    Py_ssize_t misses;   /* candidates that were no match */
    int memmem;          /* too many misses: memmem from here on */
} search;

#define SAMPLE 4096

static void
search_init(search *sr, const char *s, Py_ssize_t n, const char *f, Py_ssize_t m)
{
    Py_ssize_t seen[256] = {0};
    const unsigned char *u = (const unsigned char *)s, *uf = (const unsigned char *)f;

    for (Py_ssize_t i = 0; i < (n < SAMPLE ? n : SAMPLE); i++)
        seen[u[i]]++;
    sr->base = s;
    sr->f = f;
    sr->m = m;
    sr->rare = 0;
    for (Py_ssize_t i = 1; i < m; i++) {
        if (seen[uf[i]] < seen[uf[sr->rare]])
            sr->rare = i;
    }
    sr->misses = 0;
    sr->memmem = 0;
}

/* The first match in [p, end), or NULL. */
static const char *
next_match(search *sr, const char *p, const char *end)
{
    const Py_ssize_t m = sr->m, r = sr->rare;
    const char *at;

    while (!sr->memmem) {
        if (end - p < m)
            return NULL;
        at = memchr(p + r, sr->f[r], (size_t)(end - p - m + 1));
        if (at == NULL)
            return NULL;
        at -= r;
        if (memcmp(at, sr->f, (size_t)m) == 0)
            return at;
        p = at + 1;
        /* a miss costs a memchr call and up to m compared bytes */
        if (++sr->misses * (m + 64) > 2 * (p - sr->base) + 64 * SAMPLE)
            sr->memmem = 1;
    }
    return memmem(p, (size_t)(end - p), sr->f, (size_t)m);
}

/* The number of matches of f[0:m] in s[0:n]. */
static Py_ssize_t
count_in(const char *s, Py_ssize_t n, const char *f, Py_ssize_t m)
{
    const char *p = s, *end = s + n;
    Py_ssize_t count = 0;
    search sr;

    search_init(&sr, s, n, f, m);
    while ((p = next_match(&sr, p, end)) != NULL) {
        count++;
        p += m;
    }
    return count;
}

/* Copy s[0:n] to out with every match of f[0:m] replaced by r[0:k]. */
static void
fill(char *out, const char *s, Py_ssize_t n, const char *f, Py_ssize_t m,
     const char *r, Py_ssize_t k)
{
    const char *p = s, *end = s + n, *hit;
    search sr;

    search_init(&sr, s, n, f, m);
    while ((hit = next_match(&sr, p, end)) != NULL) {
        memcpy(out, p, (size_t)(hit - p));
        out += hit - p;
        memcpy(out, r, (size_t)k);
        out += k;
        p = hit + m;
    }
    memcpy(out, p, (size_t)(end - p));
}

static int
check_find(const Py_buffer *find, const char *fn)
{
    if (find->len == 0) {
        PyErr_Format(PyExc_ValueError, "%s(): find must not be empty", fn);
        return -1;
    }
    return 0;
}

static int
overlaps(const Py_buffer *a, const Py_buffer *b)
{
    const char *a0 = a->buf, *b0 = b->buf;
    return a0 < b0 + b->len && b0 < a0 + a->len;
}

PyDoc_STRVAR(count_doc,
"count(buf, find, /) -> int\n\n"
"The number of matches of find in buf, as buf.count(find). An empty find is a ValueError.");

static PyObject *
mr_count(PyObject *module, PyObject *args)
{
    Py_buffer buf, find;
    Py_ssize_t count;

    if (!PyArg_ParseTuple(args, "y*y*:count", &buf, &find))
        return NULL;
    if (check_find(&find, "count") < 0) {
        PyBuffer_Release(&buf);
        PyBuffer_Release(&find);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    count = count_in(buf.buf, buf.len, find.buf, find.len);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&buf);
    PyBuffer_Release(&find);
    return PyLong_FromSsize_t(count);
}

PyDoc_STRVAR(find_all_doc,
"find_all(buf, find, limit, /) -> list[int] | None\n\n"
"The offsets of the matches of find in buf (those buf.replace would replace), or None as\n"
"soon as there are more than limit.");

static PyObject *
mr_find_all(PyObject *module, PyObject *args)
{
    Py_buffer buf, find;
    Py_ssize_t limit, count = 0, cap = 0;
    Py_ssize_t *hits = NULL;
    int failed = 0;
    PyObject *list = NULL;

    if (!PyArg_ParseTuple(args, "y*y*n:find_all", &buf, &find, &limit))
        return NULL;
    if (check_find(&find, "find_all") < 0)
        goto done;
    if (limit < 0) {
        PyErr_Format(PyExc_ValueError, "find_all(): limit must be >= 0, not %zd", limit);
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    const char *s = buf.buf, *p = s, *end = s + buf.len;
    search sr;
    search_init(&sr, s, buf.len, find.buf, find.len);
    while ((p = next_match(&sr, p, end)) != NULL) {
        if (count == limit) {
            count = -1;
            break;
        }
        if (count == cap) {
            Py_ssize_t *grown;
            cap = cap ? 2 * cap : 64;
            grown = PyMem_RawRealloc(hits, (size_t)cap * sizeof(*hits));
            if (grown == NULL) {
                failed = 1;
                break;
            }
            hits = grown;
        }
        hits[count++] = p - s;
        p += find.len;
    }
    Py_END_ALLOW_THREADS
    if (failed) {
        PyErr_NoMemory();
        goto done;
    }
    if (count < 0) {
        list = Py_NewRef(Py_None);
        goto done;
    }
    list = PyList_New(count);
    for (Py_ssize_t i = 0; list != NULL && i < count; i++) {
        PyObject *offset = PyLong_FromSsize_t(hits[i]);
        if (offset == NULL)
            Py_CLEAR(list);
        else
            PyList_SET_ITEM(list, i, offset);
    }
done:
    PyMem_RawFree(hits);
    PyBuffer_Release(&buf);
    PyBuffer_Release(&find);
    return list;
}

PyDoc_STRVAR(replace_inplace_doc,
"replace_inplace(buf, find, replace, /) -> int\n\n"
"Replace every match of find in the writable buf by replace, which has find's length, and\n"
"return the number of matches: buf ends up as buf.replace(find, replace).");

static PyObject *
mr_replace_inplace(PyObject *module, PyObject *args)
{
    Py_buffer buf, find, repl;
    Py_ssize_t count = 0;
    PyObject *result = NULL;

    if (!PyArg_ParseTuple(args, "w*y*y*:replace_inplace", &buf, &find, &repl))
        return NULL;
    if (check_find(&find, "replace_inplace") < 0)
        goto done;
    if (find.len != repl.len) {
        PyErr_Format(PyExc_ValueError,
                     "replace_inplace(): find and replace must have the same length "
                     "(%zd and %zd bytes); replace() makes a new buffer", find.len, repl.len);
        goto done;
    }
    if (overlaps(&buf, &find) || overlaps(&buf, &repl)) {
        PyErr_SetString(PyExc_ValueError,
                        "replace_inplace(): find and replace must not share memory with buf");
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    char *p = buf.buf;
    const char *end = p + buf.len, *hit;
    search sr;
    search_init(&sr, p, buf.len, find.buf, find.len);
    while ((hit = next_match(&sr, p, end)) != NULL) {
        p = (char *)hit;
        memcpy(p, repl.buf, (size_t)repl.len);
        p += repl.len;
        count++;
    }
    Py_END_ALLOW_THREADS
    result = PyLong_FromSsize_t(count);
done:
    PyBuffer_Release(&buf);
    PyBuffer_Release(&find);
    PyBuffer_Release(&repl);
    return result;
}

PyDoc_STRVAR(replace_doc,
"replace(buf, find, replace, /) -> tuple[bytes, int]\n\n"
"bytes(buf).replace(find, replace) and the number of matches: the matches are counted\n"
"first, so the new bytes are allocated once at their exact size.");

static PyObject *
mr_replace(PyObject *module, PyObject *args)
{
    Py_buffer buf, find, repl;
    Py_ssize_t count, size;
    PyObject *out, *result = NULL;

    if (!PyArg_ParseTuple(args, "y*y*y*:replace", &buf, &find, &repl))
        return NULL;
    if (check_find(&find, "replace") < 0)
        goto done;
    Py_BEGIN_ALLOW_THREADS
    count = count_in(buf.buf, buf.len, find.buf, find.len);
    Py_END_ALLOW_THREADS
    if (repl.len > find.len && count > (PY_SSIZE_T_MAX - buf.len) / (repl.len - find.len)) {
        PyErr_NoMemory();
        goto done;
    }
    size = buf.len + count * (repl.len - find.len);
    out = PyBytes_FromStringAndSize(NULL, size);
    if (out == NULL)
        goto done;
    Py_BEGIN_ALLOW_THREADS
    fill(PyBytes_AS_STRING(out), buf.buf, buf.len, find.buf, find.len, repl.buf, repl.len);
    Py_END_ALLOW_THREADS
    result = Py_BuildValue("Nn", out, count);
done:
    PyBuffer_Release(&buf);
    PyBuffer_Release(&find);
    PyBuffer_Release(&repl);
    return result;
}

/* Whether p[0:n] holds a run of at least length bytes whose members[] entry is nonzero. Each
 * candidate window is read from its end back to its last non-member, and the next window
 * starts just past that byte: no run can contain it, and most windows cost one byte. */
static int
run_in(const unsigned char *p, Py_ssize_t n, const unsigned char *members, Py_ssize_t length)
{
    Py_ssize_t start = 0, k;

    while (start + length <= n) {
        k = start + length - 1;
        while (k >= start && members[p[k]])
            k--;
        if (k < start)
            return 1;
        start = k + 1;
    }
    return 0;
}

PyDoc_STRVAR(has_run_doc,
"has_run(buf, members, length, /) -> bool\n\n"
"Whether buf holds length consecutive bytes b whose members[b] is nonzero (members: 256\n"
"bytes), as buf.translate(members).find(b'\\x01' * length) >= 0 for a table of 0s and 1s,\n"
"without the copy.");

static PyObject *
mr_has_run(PyObject *module, PyObject *args)
{
    Py_buffer buf, members;
    Py_ssize_t length;
    int found;

    if (!PyArg_ParseTuple(args, "y*y*n:has_run", &buf, &members, &length))
        return NULL;
    if (members.len != 256) {
        PyErr_Format(PyExc_ValueError, "has_run(): members must be 256 bytes, not %zd",
                     members.len);
        PyBuffer_Release(&buf);
        PyBuffer_Release(&members);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    found = length <= 0 || run_in(buf.buf, buf.len, members.buf, length);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&buf);
    PyBuffer_Release(&members);
    return PyBool_FromLong(found);
}

static PyMethodDef methods[] = {
    {"count", mr_count, METH_VARARGS, count_doc},
    {"find_all", mr_find_all, METH_VARARGS, find_all_doc},
    {"replace_inplace", mr_replace_inplace, METH_VARARGS, replace_inplace_doc},
    {"replace", mr_replace, METH_VARARGS, replace_doc},
    {"has_run", mr_has_run, METH_VARARGS, has_run_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "airflow_bigfile.patch._memreplace",
    .m_doc = "Literal find and replace over buffers, as bytes.replace, and runs of a "
             "byte set, without the GIL.",
    .m_size = 0,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__memreplace(void)
{
    return PyModuleDef_Init(&module);
}
