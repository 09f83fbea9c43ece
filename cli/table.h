/*
 * Aligned text tables: collect rows of strings, compute each column's width, print with two
 * spaces between columns (the last column is not padded).
 */
#ifndef TAPIO_CLI_TABLE_H
#define TAPIO_CLI_TABLE_H

#include <stddef.h>
#include <stdio.h>

#define TABLE_MAX_COLS 12

struct table {
	size_t ncols;
	size_t nrows;
	size_t cap;
	char **cells; /* nrows × ncols, row-major, each owned */
};

/* Starts a table with the given header (NULL: none; ncols ≤ TABLE_MAX_COLS).
 * Returns 0 or -ENOMEM. */
int table_init(struct table *t, size_t ncols, const char *const *header);
/* Adds a row of ncols cells (copied; NULL prints as ""). Returns 0 or -ENOMEM. */
int table_add(struct table *t, const char *const *cells);
/* Prints header and rows, aligned. */
void table_print(const struct table *t, FILE *out);
void table_fini(struct table *t);

#endif
