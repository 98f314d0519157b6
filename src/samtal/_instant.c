/* The instant of an events.md `at` text, in C: what `samtal.times.parse_instant` does for
 * every event of every ingest path. The Python parser in times.py is the definition (a
 * property test holds the two to the same answer for any text); this one exists because the
 * Python one, a few cached look-ups, cost 0.6 us of the 1.7 us that decoding an event takes.
 *
 * The form: YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM), `T` and `Z` in either case, a
 * fraction of 1 to 9 digits of which those past the microsecond are dropped. The answer is
 * microseconds since 1970-01-01T00:00:00Z, or None when the text is not of that form or names
 * no real moment (month 13, February 30, hour 24, second 60, offset minute 60, year 0).
 *
 * Built when a C compiler is at hand (setuptools' optional extension); without it samtal
 * uses the Python parser alone. After editing this file, `pip install -e .` builds it again.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

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

static PyObject *
parse(PyObject *module, PyObject *text)
{
    static const int month_days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    (void)module;

    if (!PyUnicode_Check(text)) {
        PyErr_Format(PyExc_TypeError, "an instant is read from a str, not %.100s",
                     Py_TYPE(text)->tp_name);
        return NULL;
    }
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(text) < 0) /* a str made by the legacy API, before 3.12 */
        return NULL;
#endif
    /* Every character of the form is ASCII: a text holding one above U+00FF is not of it. */
    if (PyUnicode_KIND(text) != PyUnicode_1BYTE_KIND)
        Py_RETURN_NONE;
    const Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    const Py_UCS1 *s = PyUnicode_1BYTE_DATA(text);
    if (n < 20) /* YYYY-MM-DDTHH:MM:SSZ */
        Py_RETURN_NONE;

    const int century = two_digits(s), years = two_digits(s + 2);
    const int month = two_digits(s + 5), day = two_digits(s + 8);
    const int hour = two_digits(s + 11), minute = two_digits(s + 14);
    const int second = two_digits(s + 17);
    if (century < 0 || years < 0 || month < 0 || day < 0 || hour < 0 || minute < 0
        || second < 0 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't')
        || s[13] != ':' || s[16] != ':')
        Py_RETURN_NONE;
    const long year = century * 100L + years;
    if (year < 1 || month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59
        || second > 59)
        Py_RETURN_NONE;
    if (day > month_days[month - 1] + (month == 2 && is_leap(year)))
        Py_RETURN_NONE;

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
            Py_RETURN_NONE;
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
            Py_RETURN_NONE;
        offset = (hours * 60LL + minutes) * 60 * 1000000;
        if (s[at] == '-')
            offset = -offset;
    }
    else {
        Py_RETURN_NONE;
    }

    const long long days = days_from_civil(year, month, day);
    const long long seconds = ((days * 24 + hour) * 60 + minute) * 60 + second;
    return PyLong_FromLongLong(seconds * 1000000 + fraction - offset);
}

static PyMethodDef methods[] = {
    {"parse", parse, METH_O,
     "parse(text) -> int | None\n--\n\n"
     "The instant of an events.md `at` text in microseconds since the epoch, or None."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "samtal._instant",
    .m_doc = "The events.md instant parser in C (samtal.times.parse_instant).",
    .m_size = 0,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__instant(void)
{
    return PyModuleDef_Init(&module);
}
