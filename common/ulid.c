/*
 * ULIDs: 48-bit ms timestamp + 80 random bits, Crockford base32. Within one millisecond
 * the previous random part is incremented, so ids from one process sort in generation
 * order; across milliseconds they sort by time. One mutex guards the state; generation is cheap.
 */
#include "ulid.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

static const char crockford[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

static pthread_mutex_t ulid_lock = PTHREAD_MUTEX_INITIALIZER;
static bool ulid_seeded;
static uint64_t last_ms;
static uint8_t last_rand[10];
/* xorshift state seeded once from getrandom(); ids need uniqueness, not secrecy */
static uint64_t prng_state[2];

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void seed(void)
{
	uint64_t s[2] = {0, 0};
	ssize_t n = getrandom(s, sizeof(s), 0);

	if (n != (ssize_t)sizeof(s)) {
		/* getrandom cannot fail on Linux >= 3.17 once the pool is ready; mix what we
		 * have so a failure still gives distinct processes distinct streams */
		struct timespec ts;
		uint64_t x;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		x = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
		x ^= (uint64_t)getpid() << 32;
		s[0] ^= splitmix64(&x);
		s[1] ^= splitmix64(&x);
	}
	/* expand through splitmix so an all-zero read cannot stall xorshift */
	prng_state[0] = splitmix64(&s[0]);
	prng_state[1] = splitmix64(&s[1]);
	if (!prng_state[0] && !prng_state[1])
		prng_state[0] = 1;
	ulid_seeded = true;
}

static uint64_t xorshift128p(void)
{
	uint64_t a = prng_state[0];
	const uint64_t b = prng_state[1];

	prng_state[0] = b;
	a ^= a << 23;
	prng_state[1] = a ^ b ^ (a >> 17) ^ (b >> 26);
	return prng_state[1] + b;
}

static void fresh_random(uint8_t r[10])
{
	uint64_t a = xorshift128p();
	uint64_t b = xorshift128p();

	memcpy(r, &a, 8);
	memcpy(r + 8, &b, 2);
}

/* Big-endian 80-bit increment; returns false on overflow (all ones → zero). */
static bool increment(uint8_t r[10])
{
	for (int i = 9; i >= 0; i--) {
		if (++r[i] != 0)
			return true;
	}
	return false;
}

static void encode(uint64_t ms, const uint8_t r[10], char out[27])
{
	/* 10 chars of time: 50 bits, the top 2 always zero for a 48-bit value */
	for (int i = 9; i >= 0; i--) {
		out[i] = crockford[ms & 31];
		ms >>= 5;
	}
	/* 16 chars of randomness: 80 bits, 5 at a time, big-endian */
	for (int i = 0; i < 16; i++) {
		unsigned bit = (unsigned)i * 5;
		unsigned byte = bit / 8, shift = bit % 8;
		unsigned v = (unsigned)r[byte] << 8;

		if (byte + 1 < 10)
			v |= r[byte + 1];
		out[10 + i] = crockford[(v >> (11 - shift)) & 31];
	}
	out[26] = '\0';
}

void ulid_generate(uint64_t wall_ms, char out[27])
{
	uint8_t r[10];
	uint64_t ms = wall_ms & 0xffffffffffffull;

	pthread_mutex_lock(&ulid_lock);
	if (!ulid_seeded)
		seed();
	if (ms == last_ms) {
		/* same ms: +1 on the random part keeps ids from this process in order */
		memcpy(r, last_rand, sizeof(r));
		if (!increment(r)) {
			/* 2^80 ids in one ms cannot happen; move to the next ms to stay sorted */
			ms++;
			fresh_random(r);
		}
	} else {
		fresh_random(r);
	}
	/*
	 * An earlier ms (events mapped from several ring buffers arrive slightly out of order)
	 * keeps its own time, so the id still sorts by the occurrence's timestamp; it does
	 * not move the monotonic state back.
	 */
	if (ms >= last_ms) {
		last_ms = ms;
		memcpy(last_rand, r, sizeof(r));
	}
	pthread_mutex_unlock(&ulid_lock);
	encode(ms, r, out);
}

/* The value of a Crockford base32 digit (either case), or -1. A table: ingest validates
 * every occurrence's id, and a strchr per character showed in the controller's profile. */
static int decode_char(char c)
{
	static const signed char letters[26] = {
	    10, 11, 12, 13, 14, 15, 16, 17, -1, 18, 19, -1, 20, /* A..M (no I, L) */
	    21, -1, 22, 23, 24, 25, 26, -1, 27, 28, 29, 30, 31, /* N..Z (no O, U) */
	};

	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'z')
		c = (char)(c - 'a' + 'A');
	if (c < 'A' || c > 'Z')
		return -1;
	return letters[c - 'A'];
}

/* Crockford base32 digits, either case (as decode_char reads them); checked by a unit test. */
static const unsigned char valid_digit[256] = {
    ['0' ... '9'] = 1, ['A' ... 'H'] = 1, ['J' ... 'K'] = 1, ['M' ... 'N'] = 1,
    ['P' ... 'T'] = 1, ['V' ... 'Z'] = 1, ['a' ... 'h'] = 1, ['j' ... 'k'] = 1,
    ['m' ... 'n'] = 1, ['p' ... 't'] = 1, ['v' ... 'z'] = 1,
};

bool ulid_is_digit(char c)
{
	return valid_digit[(unsigned char)c] != 0;
}

#ifdef __SSE2__
/* The bytes of v that are Crockford digits (either case), as a 16-bit mask. */
static inline unsigned digit_mask(__m128i v)
{
	/* signed compares: a byte >= 0x80 is negative and fails every range */
	__m128i digit = _mm_and_si128(_mm_cmpgt_epi8(v, _mm_set1_epi8('0' - 1)),
				      _mm_cmpgt_epi8(_mm_set1_epi8('9' + 1), v));
	__m128i lc = _mm_or_si128(v, _mm_set1_epi8(0x20)); /* 'A'..'Z' -> 'a'..'z' */
	__m128i letter = _mm_and_si128(_mm_cmpgt_epi8(lc, _mm_set1_epi8('a' - 1)),
				       _mm_cmpgt_epi8(_mm_set1_epi8('z' + 1), lc));
	__m128i bad = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(lc, _mm_set1_epi8('i')),
						_mm_cmpeq_epi8(lc, _mm_set1_epi8('l'))),
				   _mm_or_si128(_mm_cmpeq_epi8(lc, _mm_set1_epi8('o')),
						_mm_cmpeq_epi8(lc, _mm_set1_epi8('u'))));

	return (unsigned)_mm_movemask_epi8(_mm_or_si128(digit, _mm_andnot_si128(bad, letter)));
}
#endif

bool ulid_valid26(const char s[TAPIO_ULID_CHARS])
{
	if (s[0] < '0' || s[0] > '7')
		return false;
#ifdef __SSE2__
	/* two overlapping 16-byte loads cover the 26 characters */
	return (digit_mask(_mm_loadu_si128((const __m128i *)s)) &
		digit_mask(_mm_loadu_si128((const __m128i *)(s + TAPIO_ULID_CHARS - 16)))) ==
	       0xffff;
#else
	for (int i = 1; i < TAPIO_ULID_CHARS; i++)
		if (!valid_digit[(unsigned char)s[i]])
			return false;
	return true;
#endif
}

int ulid_validate(const char *s)
{
	if (!s)
		return -EINVAL;
	/* stops at the first non-digit: a shorter string ends there (its NUL is not a digit),
	 * nothing past it is read */
	for (int i = 0; i < 26; i++)
		if (!valid_digit[(unsigned char)s[i]])
			return -EINVAL;
	if (s[26] != '\0' || decode_char(s[0]) > 7)
		return -EINVAL;
	return 0;
}

int ulid_time_ms(const char *s, uint64_t *wall_ms)
{
	uint64_t ms = 0;

	if (ulid_validate(s) != 0)
		return -EINVAL;
	for (int i = 0; i < 10; i++)
		ms = (ms << 5) | (uint64_t)decode_char(s[i]);
	*wall_ms = ms;
	return 0;
}
