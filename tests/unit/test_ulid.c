#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/ulid.h"

static const char *crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

Test(ulid, format_and_time, .timeout = 5)
{
	char id[27];
	uint64_t ms;

	ulid_generate(1469918176385ull, id);
	cr_assert_eq(strlen(id), 26);
	/* time part of the ULID spec's example timestamp */
	cr_assert(strncmp(id, "01ARYZ6S41", 10) == 0, "%s", id);
	for (int i = 0; i < 26; i++)
		cr_assert_not_null(strchr(crockford, id[i]), "char %d of %s", i, id);
	cr_assert_eq(ulid_validate(id), 0);
	cr_assert_eq(ulid_time_ms(id, &ms), 0);
	cr_assert_eq(ms, 1469918176385ull);

	ulid_generate(0xffffffffffffull, id);
	cr_assert(strncmp(id, "7ZZZZZZZZZ", 10) == 0, "%s", id);
	cr_assert_eq(ulid_time_ms(id, &ms), 0);
	cr_assert_eq(ms, 0xffffffffffffull);
}

Test(ulid, validate_rejects, .timeout = 5)
{
	uint64_t ms;

	cr_assert_eq(ulid_validate("01ARYZ6S41TSV4RRFFQ69G5FAV"), 0);
	cr_assert_eq(ulid_validate("01ARYZ6S41TSV4RRFFQ69G5FA"), -EINVAL);   /* 25 */
	cr_assert_eq(ulid_validate("01ARYZ6S41TSV4RRFFQ69G5FAVX"), -EINVAL); /* 27 */
	cr_assert_eq(ulid_validate("81ARYZ6S41TSV4RRFFQ69G5FAV"), -EINVAL);  /* > 48 bits */
	cr_assert_eq(ulid_validate("01ARYZ6S41TSV4RRFFQ69G5FAU"), -EINVAL);  /* U */
	cr_assert_eq(ulid_validate("01ARYZ6S41TSV4RRFFQ69G5FAI"), -EINVAL);  /* I */
	cr_assert_eq(ulid_validate("01ARYZ6S41TSV4RR-FQ69G5FAV"), -EINVAL);
	cr_assert_eq(ulid_validate(""), -EINVAL);
	cr_assert_eq(ulid_validate(NULL), -EINVAL);
	cr_assert_eq(ulid_time_ms("garbage", &ms), -EINVAL);
}

/* The digit table is written out by hand: every byte value against the alphabet. */
Test(ulid, digit_table_is_the_crockford_alphabet, .timeout = 5)
{
	char id[27];

	for (int c = 0; c < 256; c++) {
		int up = c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c;
		bool want = c != 0 && strchr(crockford, up) != NULL;

		cr_assert_eq(ulid_is_digit((char)c), want, "byte %d", c);
		/* and ulid_validate agrees, in the last position (any digit may be there) */
		memcpy(id, "01ARZ3NDEKTSV4RRFFQ69G5FAV", 27);
		id[25] = (char)c;
		cr_assert_eq(ulid_validate(id) == 0, want, "byte %d", c);
	}
}

/*
 * The vector check of ids inside a frame: every byte value at every position of a valid id
 * (the two loads overlap in positions 10..15) judged as ulid_validate judges the string.
 */
Test(ulid, valid26_agrees_with_validate_at_every_position, .timeout = 10)
{
	char id[27], frame[64];

	for (int at = 0; at < 26; at++) {
		for (int c = 0; c < 256; c++) {
			memcpy(id, "7ZZZZZZZZZZZZZZZZZZZZZZZZZ", 27);
			id[at] = (char)c;
			/* the characters sit in a frame with no NUL after them */
			memset(frame, 'Z', sizeof(frame));
			memcpy(frame + 3, id, 26);
			cr_assert_eq(ulid_valid26(frame + 3), c != 0 && ulid_validate(id) == 0,
				     "byte %d at %d", c, at);
		}
	}
	cr_assert(ulid_valid26("01arz3ndektsv4rrffq69g5fav"), "lower case");
	cr_assert_not(ulid_valid26("81ARZ3NDEKTSV4RRFFQ69G5FAV"), "past 48 bits");
}

Test(ulid, monotonic_and_unique_100k, .timeout = 30)
{
	enum { N = 100000 };
	char(*ids)[27] = malloc(sizeof(*ids) * N);
	uint64_t base = 1795613992000ull;

	cr_assert_not_null(ids);
	/* ten ids per millisecond exercise the same-ms increment */
	for (int i = 0; i < N; i++)
		ulid_generate(base + (uint64_t)(i / 10), ids[i]);
	for (int i = 1; i < N; i++)
		cr_assert(strcmp(ids[i - 1], ids[i]) < 0, "%d: %s !< %s", i, ids[i - 1], ids[i]);
	free(ids);
}

Test(ulid, earlier_ms_keeps_its_time, .timeout = 5)
{
	char a[27], late[27], b[27], c[27];
	uint64_t ms;

	ulid_generate(1795613992000ull, a);
	ulid_generate(1795613991000ull, late); /* an event from a second earlier */
	ulid_generate(1795613992000ull, b);
	ulid_generate(1795613992000ull, c);
	cr_assert_eq(ulid_time_ms(late, &ms), 0);
	cr_assert_eq(ms, 1795613991000ull);
	cr_assert(strcmp(late, a) < 0);
	/* the step back did not disturb the same-ms sequence */
	cr_assert(strcmp(a, b) < 0 && strcmp(b, c) < 0, "%s %s %s", a, b, c);
	cr_assert(strncmp(a, c, 20) == 0, "%s %s", a, c);
}

Test(ulid, same_ms_increments_random_part, .timeout = 5)
{
	char a[27], b[27];

	ulid_generate(1895613992000ull, a);
	ulid_generate(1895613992000ull, b);
	cr_assert(strncmp(a, b, 10) == 0);
	cr_assert(strcmp(a, b) < 0, "%s %s", a, b);
	/* +1 on the 80-bit random part: only the tail differs */
	cr_assert(strncmp(a, b, 20) == 0, "%s %s", a, b);
}

#define THREADS	   4
#define PER_THREAD 20000

static char thread_ids[THREADS][PER_THREAD][27];

static void *gen_thread(void *arg)
{
	char(*out)[27] = arg;

	for (int i = 0; i < PER_THREAD; i++)
		ulid_generate(1995613992000ull, out[i]);
	return NULL;
}

static int cmp_id(const void *a, const void *b)
{
	return strcmp(a, b);
}

Test(ulid, thread_safe_unique, .timeout = 30)
{
	pthread_t th[THREADS];

	for (int t = 0; t < THREADS; t++)
		cr_assert_eq(pthread_create(&th[t], NULL, gen_thread, thread_ids[t]), 0);
	for (int t = 0; t < THREADS; t++)
		pthread_join(th[t], NULL);
	/* each thread's own sequence is ordered; together no duplicates */
	for (int t = 0; t < THREADS; t++)
		for (int i = 1; i < PER_THREAD; i++)
			cr_assert(strcmp(thread_ids[t][i - 1], thread_ids[t][i]) < 0);
	qsort(thread_ids, THREADS * PER_THREAD, 27, cmp_id);
	char(*flat)[27] = &thread_ids[0][0];
	for (int i = 1; i < THREADS * PER_THREAD; i++)
		cr_assert(strcmp(flat[i - 1], flat[i]) != 0, "duplicate %s", flat[i]);
}
