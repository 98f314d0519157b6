/* What samtal's speedups in C share across their files (_speedups.c, _speedups_events.c). */
#ifndef SAMTAL_SPEEDUPS_H
#define SAMTAL_SPEEDUPS_H

#include <Python.h>

/* The instant of an events.md `at` text in microseconds since the epoch, into `*instant`: 1,
 * or 0 when the text is not of the form, or -1 (an error set) when it is not a str. */
int samtal_instant_of(PyObject *text, long long *instant);

/* The functions of _speedups_events.c, as the module's table names them. */
PyObject *samtal_calls_of(PyObject *module, PyObject *events);
PyObject *samtal_id_hashes(PyObject *module, PyObject *events);
PyObject *samtal_decode_lines(PyObject *module, PyObject *const *args, Py_ssize_t nargs);

#endif
