/* samtal's speedups for events (see _speedups.c, which makes the module): each stands for a
 * Python function that stays the definition, and a property test holds the C to it.
 *
 * decode_lines: samtal.events.decode_batch's loop, every ingest path's, with the common case
 * of `_complete` (the rules that span an event's fields): 7,000 instructions a line where
 * Python's loop took 11,000, 4,700 of them msgspec's typed decode. Anything else (a line with
 * escapes, a withheld caller, any broken rule) it hands to Python's `_complete` and
 * `_decode_fully`, which decide.
 *
 * calls_of, id_hashes: a file's events grouped by call, duplicates left out
 * (samtal.aggregate.calls_of), and each event's hash of (org, id) (samtal.offline, for the
 * seams): 0.75x and 0.25x of Python's time.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include "_speedups.h"

/* ---- A file's calls: its events grouped, and their ids hashed ----------------------------- */

/* Attribute names, interned once. */
static PyObject *name_org, *name_id, *name_call;

static int
names_ready(void)
{
    if (name_call != NULL)
        return 0;
    name_org = PyUnicode_InternFromString("org");
    name_id = PyUnicode_InternFromString("id");
    name_call = name_org && name_id ? PyUnicode_InternFromString("call") : NULL;
    return name_call == NULL ? -1 : 0;
}

/* The value under `key` in dict `of`, made by `make` when missing (a new reference to a
 * borrowed one, as PyDict_SetDefault gives). */
static PyObject *
entry(PyObject *of, PyObject *key, PyObject *(*make)(void))
{
    PyObject *value = PyDict_GetItemWithError(of, key);
    if (value != NULL || PyErr_Occurred())
        return value;
    PyObject *made = make();
    if (made == NULL)
        return NULL;
    value = PyDict_SetDefault(of, key, made);
    Py_DECREF(made);
    return value;
}

static PyObject *
new_dict(void)
{
    return PyDict_New();
}

static PyObject *
new_set(void)
{
    return PySet_New(NULL);
}

PyObject *
samtal_calls_of(PyObject *module, PyObject *events)
{
    (void)module;
    if (names_ready() < 0)
        return NULL;
    PyObject *iterator = PyObject_GetIter(events);
    if (iterator == NULL)
        return NULL;
    PyObject *orgs = PyDict_New(), *seen_of = PyDict_New();
    /* The organisation of the last event, with its ids seen and its calls (borrowed). */
    PyObject *org_name = NULL, *seen = NULL, *calls = NULL;
    PyObject *event;
    int failed = orgs == NULL || seen_of == NULL;
    while (!failed && (event = PyIter_Next(iterator)) != NULL) {
        PyObject *org = PyObject_GetAttr(event, name_org);
        PyObject *id = org ? PyObject_GetAttr(event, name_id) : NULL;
        failed = id == NULL;
        if (!failed && org != org_name) {
            int other = org_name == NULL ? 1 : PyObject_RichCompareBool(org, org_name, Py_NE);
            if (other < 0)
                failed = 1;
            else if (other) {
                calls = entry(orgs, org, new_dict);
                seen = calls ? entry(seen_of, org, new_set) : NULL;
                failed = seen == NULL;
                Py_XSETREF(org_name, org);
                org = NULL; /* org_name holds it now */
            }
        }
        int known = failed ? -1 : PySet_Contains(seen, id);
        if (known == 0) {
            PyObject *call = PyObject_GetAttr(event, name_call);
            PyObject *group = NULL;
            failed = call == NULL || PySet_Add(seen, id) < 0;
            if (!failed) {
                group = PyDict_GetItemWithError(calls, call);
                if (group != NULL)
                    failed = PyList_Append(group, event) < 0;
                else if (PyErr_Occurred())
                    failed = 1;
                else {
                    group = PyList_New(1);
                    failed = group == NULL;
                    if (!failed) {
                        Py_INCREF(event);
                        PyList_SET_ITEM(group, 0, event);
                        failed = PyDict_SetItem(calls, call, group) < 0;
                        Py_DECREF(group);
                    }
                }
            }
            Py_XDECREF(call);
        } else if (known < 0)
            failed = 1;
        Py_XDECREF(org);
        Py_XDECREF(id);
        Py_DECREF(event);
    }
    Py_XDECREF(org_name);
    Py_DECREF(iterator);
    Py_XDECREF(seen_of);
    if (failed || PyErr_Occurred()) {
        Py_XDECREF(orgs);
        return NULL;
    }
    return orgs;
}

/* hash((org, id)): CPython's hash of a tuple (Objects/tupleobject.c, since 3.8) worked out
 * from the two items' hashes, without making the tuple; -1 with an error set. Where hashes
 * are 32 bits the tuple's hash has other constants: there the tuple is made. */
static Py_hash_t
pair_hash(PyObject *org, PyObject *id)
{
#if SIZEOF_PY_UHASH_T > 4
    const Py_uhash_t prime1 = 11400714785074694791ULL, prime2 = 14029467366897019727ULL,
                     prime5 = 2870177450012600261ULL;
    const Py_hash_t first = PyObject_Hash(org), second = first == -1 ? -1 : PyObject_Hash(id);
    if (second == -1)
        return -1;
    Py_uhash_t acc = prime5;
    const Py_uhash_t lanes[2] = {(Py_uhash_t)first, (Py_uhash_t)second};
    for (int k = 0; k < 2; k++) {
        acc += lanes[k] * prime2;
        acc = (acc << 31) | (acc >> 33);
        acc *= prime1;
    }
    acc += 2 ^ (prime5 ^ 3527539UL);
    return acc == (Py_uhash_t)-1 ? 1546275796 : (Py_hash_t)acc;
#else
    PyObject *pair = PyTuple_Pack(2, org, id);
    const Py_hash_t hash = pair == NULL ? -1 : PyObject_Hash(pair);
    Py_XDECREF(pair);
    return hash;
#endif
}

PyObject *
samtal_id_hashes(PyObject *module, PyObject *events)
{
    (void)module;
    if (names_ready() < 0)
        return NULL;
    PyObject *sequence = PySequence_Fast(events, "id_hashes takes a sequence of events");
    if (sequence == NULL)
        return NULL;
    const Py_ssize_t n = PySequence_Fast_GET_SIZE(sequence);
    PyObject *made = PyBytes_FromStringAndSize(NULL, n * 8);
    if (made == NULL) {
        Py_DECREF(sequence);
        return NULL;
    }
    long long *out = (long long *)PyBytes_AS_STRING(made);
    PyObject **items = PySequence_Fast_ITEMS(sequence);
    for (Py_ssize_t k = 0; k < n; k++) {
        PyObject *org = PyObject_GetAttr(items[k], name_org);
        PyObject *id = org ? PyObject_GetAttr(items[k], name_id) : NULL;
        const Py_hash_t hash = id ? pair_hash(org, id) : -1;
        Py_XDECREF(org);
        Py_XDECREF(id);
        if (hash == -1) { /* a pair's hash is never -1: an error */
            Py_DECREF(made);
            Py_DECREF(sequence);
            return NULL;
        }
        out[k] = hash;
    }
    Py_DECREF(sequence);
    return made;
}

/* ---- A batch of NDJSON lines decoded (samtal.events.decode_batch) ------------------------ */

/* The fields of samtal.events.Event that the common case reads and sets, found by their slots
 * (msgspec keeps a Struct's fields as slots, each named by a member descriptor): a generic
 * attribute look-up costs 160 instructions, most of an event's checks. */
enum { F_TYPE, F_PARTY, F_NUMBER, F_KIND, F_DIALED, F_TARGET, F_AT, F_INSTANT, F_COUNT };
static Py_ssize_t slot_offsets[F_COUNT];
static PyObject *slots_of; /* the class whose slots those are */

static int
slots_ready(PyObject *event_class)
{
    if (event_class == slots_of)
        return 0;
    Py_ssize_t offsets[F_COUNT];
    static const char *names[F_COUNT] = {"type",   "party",  "number", "kind",
                                         "dialed", "target", "at",     "instant"};
    for (int k = 0; k < F_COUNT; k++) {
        PyObject *field = PyType_Check(event_class)
                              ? PyDict_GetItemString(((PyTypeObject *)event_class)->tp_dict,
                                                     names[k])
                              : NULL;
        if (field == NULL || !Py_IS_TYPE(field, &PyMemberDescr_Type)
            || ((PyMemberDescrObject *)field)->d_member->type != T_OBJECT_EX) {
            PyErr_Format(PyExc_TypeError, "decode_lines: the event's `%s` is not a slot",
                         names[k]);
            return -1;
        }
        offsets[k] = ((PyMemberDescrObject *)field)->d_member->offset;
    }
    memcpy(slot_offsets, offsets, sizeof offsets); /* all or none: another class's stay */
    Py_INCREF(event_class);
    Py_XSETREF(slots_of, event_class);
    return 0;
}

/* The field's value (borrowed; never NULL for a decoded event, whose every field is set). */
static inline PyObject *
field(PyObject *event, int k)
{
    return *(PyObject **)((char *)event + slot_offsets[k]);
}

static inline void
clear_field(PyObject *event, int k)
{
    PyObject **slot = (PyObject **)((char *)event + slot_offsets[k]);
    if (*slot != Py_None) {
        Py_INCREF(Py_None);
        Py_XSETREF(*slot, Py_None);
    }
}

/* Whether a number follows events.md's rule (samtal.events.NUMBER_PATTERN): 1 to 64 digits,
 * ASCII letters or + * # . _ -, + only first and - never first. */
static int
number_follows_rule(PyObject *number)
{
    if (!PyUnicode_Check(number) || !PyUnicode_IS_ASCII(number))
        return 0;
    const Py_ssize_t n = PyUnicode_GET_LENGTH(number);
    const Py_UCS1 *s = PyUnicode_1BYTE_DATA(number);
    if (n < 1 || n > 64)
        return 0;
    for (Py_ssize_t k = 0; k < n; k++) {
        const Py_UCS1 c = s[k];
        const int fine = (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
                         || c == '*' || c == '#' || c == '.' || c == '_' || (c == '-' && k > 0)
                         || (c == '+' && k == 0);
        if (!fine)
            return 0;
    }
    return 1;
}

/* What samtal.events._complete does for a line without escapes (`plain`), in the common case
 * alone: 1 when the event is complete (its unused fields cleared, its instant set), 0 when
 * Python's `_complete` must decide (every rule broken among them). `rules` maps a type to (the
 * parties it allows, the name of the one extra field it needs or None). */
static int
quick_complete(PyObject *event, PyObject *rules, long long min_instant, long long max_instant)
{
    PyObject *rule = PyDict_GetItemWithError(rules, field(event, F_TYPE));
    if (rule == NULL)
        return PyErr_Occurred() ? -1 : 0;
    if (!PyTuple_Check(rule) || PyTuple_GET_SIZE(rule) != 2
        || !PyTuple_Check(PyTuple_GET_ITEM(rule, 0)))
        return 0;
    PyObject *allowed = PyTuple_GET_ITEM(rule, 0), *extra = PyTuple_GET_ITEM(rule, 1);
    if (PyTuple_GET_SIZE(allowed) == 0) { /* `ended`: its party and number are ignored */
        for (int k = F_PARTY; k <= F_TARGET; k++)
            clear_field(event, k);
    }
    else {
        PyObject *party = field(event, F_PARTY);
        int allows = 0;
        for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(allowed) && allows == 0; k++)
            allows = PyObject_RichCompareBool(party, PyTuple_GET_ITEM(allowed, k), Py_EQ);
        if (allows <= 0)
            return allows;
        PyObject *number = field(event, F_NUMBER);
        if (number == Py_None || !number_follows_rule(number))
            return 0; /* a withheld caller, or a broken rule: Python words it */
        /* kind, dialed, target: each kept only where it is the type's extra, which it needs
         * (and a dialed or target number follows the rule). */
        for (int k = F_KIND; k <= F_TARGET; k++) {
            static const char *names[] = {"kind", "dialed", "target"};
            const int is_extra = extra != Py_None
                                 && PyUnicode_CompareWithASCIIString(extra, names[k - F_KIND]) == 0;
            PyObject *value = field(event, k);
            if (is_extra) {
                if (value == Py_None || (k != F_KIND && !number_follows_rule(value)))
                    return 0;
            }
            else
                clear_field(event, k);
        }
    }
    long long instant;
    const int found = samtal_instant_of(field(event, F_AT), &instant);
    if (found <= 0)
        return found;
    if (instant < min_instant || instant >= max_instant)
        return 0;
    PyObject *value = PyLong_FromLongLong(instant);
    if (value == NULL)
        return -1;
    PyObject **slot = (PyObject **)((char *)event + slot_offsets[F_INSTANT]);
    Py_XSETREF(*slot, value); /* the slot takes the reference */
    return 1;
}

/* Whether a line is empty or white space alone (`not line or line.isspace()`). */
static int
blank(const char *text, Py_ssize_t n)
{
    for (Py_ssize_t k = 0; k < n; k++)
        if (!(text[k] == ' ' || (text[k] >= '\t' && text[k] <= '\r')))
            return 0;
    return 1;
}

/* Appends `item` (a new reference, which this takes) to `list`. */
static int
append_new(PyObject *list, PyObject *item)
{
    if (item == NULL)
        return -1;
    const int done = PyList_Append(list, item);
    Py_DECREF(item);
    return done;
}

PyObject *
samtal_decode_lines(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 7) {
        PyErr_Format(PyExc_TypeError, "decode_lines takes 7 arguments, not %zd", nargs);
        return NULL;
    }
    PyObject *lines = args[0], *context = args[3];
    PyObject *events = args[4], *positions = args[5], *rejections = args[6];
    Py_ssize_t position = PyLong_AsSsize_t(args[1]);
    int first = PyObject_IsTrue(args[2]);
    if ((position == -1 && PyErr_Occurred()) || first < 0)
        return NULL;
    if (!PyTuple_Check(context) || PyTuple_GET_SIZE(context) != 8 || !PyList_Check(events)
        || !PyList_Check(positions) || !PyList_Check(rejections)) {
        PyErr_SetString(PyExc_TypeError, "decode_lines: (lines, first_line, opens, context, "
                                         "events, lines, rejections), the last three lists");
        return NULL;
    }
    PyObject *decode = PyTuple_GET_ITEM(context, 0), *complete = PyTuple_GET_ITEM(context, 1);
    PyObject *fully = PyTuple_GET_ITEM(context, 2), *event_type = PyTuple_GET_ITEM(context, 3);
    PyObject *rules = PyTuple_GET_ITEM(context, 4), *declines = PyTuple_GET_ITEM(context, 7);
    const long long min_instant = PyLong_AsLongLong(PyTuple_GET_ITEM(context, 5));
    const long long max_instant = PyLong_AsLongLong(PyTuple_GET_ITEM(context, 6));
    if (PyErr_Occurred())
        return NULL;
    if (!PyDict_Check(rules)) {
        PyErr_SetString(PyExc_TypeError, "decode_lines: the rules are a dict");
        return NULL;
    }
    if (slots_ready(event_type) < 0)
        return NULL;
    PyObject *iterator = PyObject_GetIter(lines);
    if (iterator == NULL)
        return NULL;
    PyObject *line;
    int failed = 0;
    for (; !failed && (line = PyIter_Next(iterator)) != NULL; position++) {
        if (!PyBytes_Check(line)) {
            PyErr_Format(PyExc_TypeError, "a line is bytes, not %.100s", Py_TYPE(line)->tp_name);
            Py_DECREF(line);
            failed = 1;
            break;
        }
        if (first) {
            first = 0;
            if (PyBytes_GET_SIZE(line) >= 3 && memcmp(PyBytes_AS_STRING(line), "\xef\xbb\xbf", 3) == 0)
                Py_SETREF(line, PyBytes_FromStringAndSize(PyBytes_AS_STRING(line) + 3,
                                                         PyBytes_GET_SIZE(line) - 3));
            if (line == NULL) {
                failed = 1;
                break;
            }
        }
        const char *text = PyBytes_AS_STRING(line);
        const Py_ssize_t n = PyBytes_GET_SIZE(line);
        PyObject *event = PyObject_CallOneArg(decode, line);
        int kept = 0;
        if (event == NULL) {
            if (PyErr_ExceptionMatches(declines))
                PyErr_Clear(); /* the full path words it */
            else
                failed = 1;
        }
        else {
            const int plain = memchr(text, '\\', n) == NULL && memchr(text, 0x7f, n) == NULL;
            kept = plain && Py_TYPE(event) == (PyTypeObject *)event_type
                       ? quick_complete(event, rules, min_instant, max_instant)
                       : 0;
            if (kept == 0) { /* Python's `_complete` decides */
                PyObject *answer = PyObject_CallFunctionObjArgs(complete, event,
                                                                plain ? Py_True : Py_False, NULL);
                kept = answer == NULL ? -1 : PyObject_IsTrue(answer);
                Py_XDECREF(answer);
            }
            if (kept < 0) {
                if (PyErr_ExceptionMatches(declines)) {
                    PyErr_Clear();
                    kept = 0;
                }
                else
                    failed = 1;
            }
            if (kept > 0)
                failed = PyList_Append(events, event) < 0
                         || append_new(positions, PyLong_FromSsize_t(position)) < 0;
            Py_DECREF(event);
        }
        if (!failed && kept <= 0 && !blank(text, n)) {
            PyObject *number = PyLong_FromSsize_t(position);
            PyObject *result = number == NULL ? NULL
                                              : PyObject_CallFunctionObjArgs(fully, line, number,
                                                                             NULL);
            if (result == NULL)
                failed = 1;
            else {
                const int is_event = PyObject_IsInstance(result, event_type);
                if (is_event > 0)
                    failed = PyList_Append(events, result) < 0
                             || PyList_Append(positions, number) < 0;
                else
                    failed = is_event < 0 || PyList_Append(rejections, result) < 0;
                Py_DECREF(result);
            }
            Py_XDECREF(number);
        }
        Py_DECREF(line);
    }
    Py_DECREF(iterator);
    if (failed || PyErr_Occurred())
        return NULL;
    Py_RETURN_NONE;
}
