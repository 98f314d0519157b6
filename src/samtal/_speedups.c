/* samtal's speedups: things Python does for every event or record, done in C where a
 * compiler is at hand (setuptools' optional extension). Each Python version stays the
 * definition and a property test holds the C to it; without the extension samtal runs the
 * same in Python alone. After editing this file, `pip install -e .` builds it again.
 *
 * parse_instant: the instant of an events.md `at` text (samtal.times.parse_instant), on every
 * ingest path. The Python one, a few cached look-ups, cost 0.6 us of the 1.7 us that decoding
 * an event takes. The form: YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM), `T` and `Z` in
 * either case, a fraction of 1 to 9 digits of which those past the microsecond are dropped.
 * The answer is microseconds since 1970-01-01T00:00:00Z, or None when the text is not of
 * that form or names no real moment (month 13, February 30, hour 24, second 60, offset
 * minute 60, year 0).
 *
 * record_json, record_csv: a record's JSON and its CSV row, its times rendered at the offsets
 * it is given, what `dumps(record.render(zone))` and `csv_row(record.render(zone).values())`
 * make (samtal.records.Record.json and .csv): 1.5 us a record against 3.4 for the JSON. They
 * decline (None) what they do not write: a text the form would escape, a time without an
 * offset in whole minutes.
 *
 * common: the values two arrays of hashes share (samtal.offline, which finds the calls at
 * the seams of a file's shares with it): 0.03 s for two arrays of half a million, where
 * Python's sets took 0.2 s of a core the shares needed.
 *
 * decode_lines, calls_of, id_hashes: a batch's lines decoded, and a file's events grouped by
 * call and hashed, in _speedups_events.c.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "_speedups.h"

/* The value of two ASCII digits at s, or -1. */
static int
two_digits(const Py_UCS1 *s)
{
    if (s[0] < '0' || s[0] > '9' || s[1] < '0' || s[1] > '9')
        return -1;
    return (s[0] - '0') * 10 + (s[1] - '0');
}

static int
is_leap(long year)
{
    return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
}

/* Days from 1970-01-01 to a date of the proleptic Gregorian calendar (H. Hinnant's
 * days_from_civil). */
static long long
days_from_civil(long y, long m, long d)
{
    y -= m <= 2;
    const long era = (y >= 0 ? y : y - 399) / 400;
    const long yoe = y - era * 400;
    const long doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return (long long)era * 146097 + doe - 719468;
}

/* The instant of `text` into `*instant`: 1, or 0 when the text is not of the form, or -1 (an
 * error set) when it is not a str. */
int
samtal_instant_of(PyObject *text, long long *instant)
{
    static const int month_days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

    if (!PyUnicode_Check(text)) {
        PyErr_Format(PyExc_TypeError, "an instant is read from a str, not %.100s",
                     Py_TYPE(text)->tp_name);
        return -1;
    }
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(text) < 0) /* a str made by the legacy API, before 3.12 */
        return -1;
#endif
    /* Every character of the form is ASCII: a text holding one above U+00FF is not of it. */
    if (PyUnicode_KIND(text) != PyUnicode_1BYTE_KIND)
        return 0;
    const Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    const Py_UCS1 *s = PyUnicode_1BYTE_DATA(text);
    if (n < 20) /* YYYY-MM-DDTHH:MM:SSZ */
        return 0;

    const int century = two_digits(s), years = two_digits(s + 2);
    const int month = two_digits(s + 5), day = two_digits(s + 8);
    const int hour = two_digits(s + 11), minute = two_digits(s + 14);
    const int second = two_digits(s + 17);
    if (century < 0 || years < 0 || month < 0 || day < 0 || hour < 0 || minute < 0
        || second < 0 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't')
        || s[13] != ':' || s[16] != ':')
        return 0;
    const long year = century * 100L + years;
    if (year < 1 || month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59
        || second > 59)
        return 0;
    if (day > month_days[month - 1] + (month == 2 && is_leap(year)))
        return 0;

    Py_ssize_t at = 19;
    long long fraction = 0; /* microseconds */
    if (s[at] == '.') {
        Py_ssize_t digits = 0;
        while (at + 1 + digits < n && s[at + 1 + digits] >= '0' && s[at + 1 + digits] <= '9') {
            if (digits < 6)
                fraction = fraction * 10 + (s[at + 1 + digits] - '0');
            digits++;
        }
        if (digits < 1 || digits > 9)
            return 0;
        for (Py_ssize_t k = digits; k < 6; k++)
            fraction *= 10;
        at += 1 + digits;
    }

    long long offset = 0; /* what the local time is ahead of UTC, in microseconds */
    if (at + 1 == n && (s[at] == 'Z' || s[at] == 'z')) {
        offset = 0;
    }
    else if (at + 6 == n && (s[at] == '+' || s[at] == '-') && s[at + 3] == ':') {
        const int hours = two_digits(s + at + 1), minutes = two_digits(s + at + 4);
        if (hours < 0 || minutes < 0 || hours > 23 || minutes > 59)
            return 0;
        offset = (hours * 60LL + minutes) * 60 * 1000000;
        if (s[at] == '-')
            offset = -offset;
    }
    else {
        return 0;
    }

    const long long days = days_from_civil(year, month, day);
    const long long seconds = ((days * 24 + hour) * 60 + minute) * 60 + second;
    *instant = seconds * 1000000 + fraction - offset;
    return 1;
}

static PyObject *
parse(PyObject *module, PyObject *text)
{
    (void)module;
    long long instant;
    const int found = samtal_instant_of(text, &instant);
    if (found < 0)
        return NULL;
    if (found == 0)
        Py_RETURN_NONE;
    return PyLong_FromLongLong(instant);
}

/* ---- Rendering: a record's JSON ------------------------------------------------------ */

/* The date of a day counted from 1970-01-01 (H. Hinnant's civil_from_days). */
static void
civil_from_days(long long z, long long *year, int *month, int *day)
{
    z += 719468;
    const long long era = (z >= 0 ? z : z - 146096) / 146097;
    const long long doe = z - era * 146097;
    const long long yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const long long doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const long long mp = (5 * doy + 2) / 153;
    *day = (int)(doy - (153 * mp + 2) / 5 + 1);
    *month = (int)(mp < 10 ? mp + 3 : mp - 9);
    *year = yoe + era * 400 + (*month <= 2);
}

static long long
floor_div(long long a, long long b)
{
    const long long q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

static char *
put_digits(char *out, long long value, int width)
{
    for (int k = width - 1; k >= 0; k--) {
        out[k] = (char)('0' + value % 10);
        value /= 10;
    }
    return out + width;
}

#define TIME_LENGTH 29 /* YYYY-MM-DDTHH:MM:SS.mmm+HH:MM */

/* Writes the cdr.md rendering of `instant` (microseconds since the epoch) at `offset` (seconds
 * ahead of UTC): what `samtal.times.render` makes, the millisecond truncated. 0, or -1 when
 * this cannot (an offset not in whole minutes, a year outside 1 to 9999). */
static int
put_time(char *out, long long instant, long long offset)
{
    if (offset % 60 != 0 || offset <= -86400 || offset >= 86400)
        return -1;
    const long long ms = floor_div(instant + offset * 1000000, 1000);
    const long long seconds = floor_div(ms, 1000);
    const long long days = floor_div(seconds, 86400);
    const long long second_of_day = seconds - days * 86400;
    long long year;
    int month, day;
    civil_from_days(days, &year, &month, &day);
    if (year < 1 || year > 9999)
        return -1;
    const long long minutes = (offset < 0 ? -offset : offset) / 60;
    out = put_digits(out, year, 4);
    *out++ = '-';
    out = put_digits(out, month, 2);
    *out++ = '-';
    out = put_digits(out, day, 2);
    *out++ = 'T';
    out = put_digits(out, second_of_day / 3600, 2);
    *out++ = ':';
    out = put_digits(out, second_of_day / 60 % 60, 2);
    *out++ = ':';
    out = put_digits(out, second_of_day % 60, 2);
    *out++ = '.';
    out = put_digits(out, ms - seconds * 1000, 3);
    *out++ = offset < 0 ? '-' : '+';
    out = put_digits(out, minutes / 60, 2);
    *out++ = ':';
    put_digits(out, minutes % 60, 2);
    return 0;
}

/* How a record's values are written: as JSON (`dumps(record.render(zone))`) or as a CSV row
 * (`csv_row(record.render(zone).values())`). */
typedef struct {
    const char *keys[7]; /* what precedes each value: `{"callerNo":`, or `,` */
    const char *end;     /* what follows the last */
    const char *null;    /* a missing value */
    int quoted;          /* whether texts and times are in double quotes */
    char refused;        /* a character the form would have to escape, besides `"` and `\` */
} Form;

static const Form JSON = {
    {"{\"callerNo\":", ",\"start\":", ",\"receivingNo\":", ",\"received\":", ",\"calleeNo\":",
     ",\"calleeAnswered\":", ",\"stop\":"},
    "}",
    "null",
    1,
    0, /* none: JSON escapes nothing else a number may hold */
};
static const Form CSV = {{"", ",", ",", ",", ",", ",", ","}, "\r\n", "", 0, ','};

/* The length of `value` written as it is, when it is None or a str of printable ASCII that
 * holds neither `"`, `\` nor the form's refused character; else -1. */
static Py_ssize_t
plain_length(PyObject *value, const Form *form)
{
    if (value == Py_None)
        return (Py_ssize_t)strlen(form->null);
    if (!PyUnicode_Check(value))
        return -1;
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(value) < 0) {
        PyErr_Clear();
        return -1;
    }
#endif
    if (!PyUnicode_IS_ASCII(value))
        return -1;
    const Py_ssize_t n = PyUnicode_GET_LENGTH(value);
    const Py_UCS1 *s = PyUnicode_1BYTE_DATA(value);
    for (Py_ssize_t k = 0; k < n; k++)
        if (s[k] < 0x20 || s[k] == 0x7f || s[k] == '"' || s[k] == '\\' || s[k] == form->refused)
            return -1;
    return n + 2 * form->quoted;
}

static char *
put_text(char *out, const char *text)
{
    const size_t n = strlen(text);
    memcpy(out, text, n);
    return out + n;
}

static char *
put_plain(char *out, PyObject *value, const Form *form)
{
    if (value == Py_None)
        return put_text(out, form->null);
    const Py_ssize_t n = PyUnicode_GET_LENGTH(value);
    if (form->quoted)
        *out++ = '"';
    memcpy(out, PyUnicode_1BYTE_DATA(value), (size_t)n);
    out += n;
    if (form->quoted)
        *out++ = '"';
    return out;
}

/* A time: the form's null when `instant` is None, else its rendering. 0, or -1 when it
 * cannot be rendered here. */
static int
put_form_time(char **out, PyObject *instant, PyObject *offset, const Form *form)
{
    if (instant == Py_None) {
        *out = put_text(*out, form->null);
        return 0;
    }
    if (!PyLong_Check(instant) || !PyLong_Check(offset))
        return -1;
    int overflow = 0;
    const long long at = PyLong_AsLongLongAndOverflow(instant, &overflow);
    const long long ahead = overflow ? 0 : PyLong_AsLongLongAndOverflow(offset, &overflow);
    /* Instants are within +-2**62 us, the offsets within a day: nothing below overflows. */
    if (overflow || at > (1LL << 62) || at < -(1LL << 62))
        return -1;
    if (form->quoted)
        *(*out)++ = '"';
    if (put_time(*out, at, ahead) < 0)
        return -1;
    *out += TIME_LENGTH;
    if (form->quoted)
        *(*out)++ = '"';
    return 0;
}

/* A record's seven values in `form` (see record_json's doc below), or None. */
static PyObject *
record_in(const Form *form, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 11) {
        PyErr_Format(PyExc_TypeError, "a record's text takes 11 arguments, not %zd", nargs);
        return NULL;
    }
    /* The values in order: three texts (args 0-2) and four times (each an instant and its
     * offset: args 3-10), interleaved as the fields are. */
    PyObject *const texts[3] = {args[0], args[1], args[2]};
    Py_ssize_t size = (Py_ssize_t)strlen(form->end);
    for (int k = 0; k < 7; k++)
        size += (Py_ssize_t)strlen(form->keys[k]);
    for (int k = 0; k < 3; k++) {
        const Py_ssize_t n = plain_length(texts[k], form);
        if (n < 0)
            Py_RETURN_NONE;
        size += n;
    }
    size += 4 * (TIME_LENGTH + 2);
    if (args[3] == Py_None || args[9] == Py_None) /* a record always has its start and stop */
        Py_RETURN_NONE;
    PyObject *made = PyBytes_FromStringAndSize(NULL, size);
    if (made == NULL)
        return NULL;
    char *start = PyBytes_AS_STRING(made), *out = start;
    out = put_plain(put_text(out, form->keys[0]), texts[0], form);
    out = put_text(out, form->keys[1]);
    if (put_form_time(&out, args[3], args[4], form) < 0)
        goto cannot;
    out = put_plain(put_text(out, form->keys[2]), texts[1], form);
    out = put_text(out, form->keys[3]);
    if (put_form_time(&out, args[5], args[6], form) < 0)
        goto cannot;
    out = put_plain(put_text(out, form->keys[4]), texts[2], form);
    out = put_text(out, form->keys[5]);
    if (put_form_time(&out, args[7], args[8], form) < 0)
        goto cannot;
    out = put_text(out, form->keys[6]);
    if (put_form_time(&out, args[9], args[10], form) < 0)
        goto cannot;
    out = put_text(out, form->end);
    if (_PyBytes_Resize(&made, out - start) < 0)
        return NULL;
    return made;
cannot:
    Py_DECREF(made);
    if (PyErr_Occurred())
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
record_json(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    return record_in(&JSON, args, nargs);
}

static PyObject *
record_csv(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    return record_in(&CSV, args, nargs);
}

/* ---- Seams: the hashes two arrays share -------------------------------------------------- */

/* Reads `object` as a C-contiguous buffer of int64 ("q", as array("q") holds). */
static int
int64_view(PyObject *object, Py_buffer *view)
{
    if (PyObject_GetBuffer(object, view, PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) < 0)
        return -1;
    if (view->itemsize != 8 || view->format == NULL
        || (strcmp(view->format, "q") != 0 && strcmp(view->format, "l") != 0)) {
        PyBuffer_Release(view);
        PyErr_SetString(PyExc_TypeError, "common takes arrays of 64-bit integers (array('q'))");
        return -1;
    }
    return 0;
}

static PyObject *
common(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "common takes 2 arguments, not %zd", nargs);
        return NULL;
    }
    Py_buffer seen, mine;
    if (int64_view(args[0], &seen) < 0)
        return NULL;
    if (int64_view(args[1], &mine) < 0) {
        PyBuffer_Release(&seen);
        return NULL;
    }
    const long long *a = seen.buf, *b = mine.buf;
    const Py_ssize_t na = seen.len / 8, nb = mine.len / 8;
    PyObject *found = PyList_New(0);
    /* An open-addressing table of `seen`, at most half full; 0 marks an empty slot, and a
     * 0 in `seen` is remembered apart. */
    size_t size = 16;
    while (size < 2 * (size_t)na)
        size <<= 1;
    long long *table = found == NULL ? NULL : PyMem_Calloc(size, sizeof(long long));
    if (table == NULL) {
        Py_XDECREF(found);
        PyBuffer_Release(&seen);
        PyBuffer_Release(&mine);
        return found == NULL ? NULL : PyErr_NoMemory();
    }
    const size_t mask = size - 1;
    int zero_seen = 0;
    for (Py_ssize_t k = 0; k < na; k++) {
        const long long value = a[k];
        if (value == 0) {
            zero_seen = 1;
            continue;
        }
        size_t slot = (size_t)((unsigned long long)value * 0x9E3779B97F4A7C15ULL >> 20) & mask;
        while (table[slot] != 0 && table[slot] != value)
            slot = (slot + 1) & mask;
        table[slot] = value;
    }
    for (Py_ssize_t k = 0; k < nb; k++) {
        const long long value = b[k];
        int hit = value == 0 ? zero_seen : 0;
        if (value != 0) {
            size_t slot =
                (size_t)((unsigned long long)value * 0x9E3779B97F4A7C15ULL >> 20) & mask;
            while (table[slot] != 0 && table[slot] != value)
                slot = (slot + 1) & mask;
            hit = table[slot] == value;
        }
        if (hit) {
            PyObject *item = PyLong_FromLongLong(value);
            if (item == NULL || PyList_Append(found, item) < 0) {
                Py_XDECREF(item);
                Py_CLEAR(found);
                break;
            }
            Py_DECREF(item);
        }
    }
    PyMem_Free(table);
    PyBuffer_Release(&seen);
    PyBuffer_Release(&mine);
    return found;
}

static PyMethodDef methods[] = {
    {"parse_instant", parse, METH_O,
     "parse_instant(text) -> int | None\n--\n\n"
     "The instant of an events.md `at` text in microseconds since the epoch, or None."},
    {"record_json", (PyCFunction)(void (*)(void))record_json, METH_FASTCALL,
     "record_json(caller_no, receiving_no, callee_no, start, start_offset, received,\n"
     "            received_offset, callee_answered, answered_offset, stop, stop_offset)\n"
     "--\n\n"
     "A record's compact JSON, the seven fields in order, each time rendered at its offset\n"
     "(seconds ahead of UTC); None where this cannot (a text JSON would escape, an offset\n"
     "not in whole minutes or None, a year outside 1 to 9999)."},
    {"record_csv", (PyCFunction)(void (*)(void))record_csv, METH_FASTCALL,
     "record_csv(caller_no, receiving_no, callee_no, start, start_offset, received,\n"
     "           received_offset, callee_answered, answered_offset, stop, stop_offset)\n"
     "--\n\n"
     "The same record as a CSV row (RFC 4180, CRLF at the end, a missing value empty); None\n"
     "where this cannot, and for a number that holds a comma."},
    {"common", (PyCFunction)(void (*)(void))common, METH_FASTCALL,
     "common(seen, mine) -> list[int]\n--\n\n"
     "The values of `mine` that `seen` holds too, in the order of `mine` (repeated as often\n"
     "as they are there): both arrays of 64-bit integers, array('q')."},
    {"calls_of", samtal_calls_of, METH_O,
     "calls_of(events) -> dict[str, dict[str, list[Event]]]\n--\n\n"
     "Each organisation's calls, each with its events in the order given, a repeated\n"
     "(org, id) left out: samtal.aggregate.calls_of."},
    {"id_hashes", samtal_id_hashes, METH_O,
     "id_hashes(events) -> bytes\n--\n\n"
     "hash((event.org, event.id)) of each event, as 64-bit integers in native order (what\n"
     "array('q').frombytes reads)."},
    {"decode_lines", (PyCFunction)(void (*)(void))samtal_decode_lines, METH_FASTCALL,
     "decode_lines(lines, first_line, opens, context, events, positions, rejections)\n--\n\n"
     "samtal.events.decode_batch's loop: each line's event (and its position) or rejection\n"
     "appended to the lists given. `context`: (decode, complete, fully, Event, rules,\n"
     "min_instant, max_instant, declined), as samtal.events makes it."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "samtal._speedups",
    .m_doc = "samtal's speedups in C: parse_instant (samtal.times), record_json and "
             "record_csv (samtal.records.Record), common and id_hashes (samtal.offline), "
             "calls_of (samtal.aggregate) and decode_lines (samtal.events).",
    .m_size = 0,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModuleDef_Init(&module);
}
