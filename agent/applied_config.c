/* <data-dir>/applied-config: the last controller-pushed config (see applied_config.h). */
#include "agent/applied_config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/occ_proto.h"

#define MAGIC	       "tapio-applied-config 1"
#define MAX_FILE_BYTES 4096

static int write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int applied_config_save(const char *dir, const struct tapio_settings *s, uint64_t generation,
			const char *hash)
{
	char path[PATH_MAX], tmp[PATH_MAX], text[MAX_FILE_BYTES];
	uint8_t packed[512];
	Tapio__V1__Settings msg;
	size_t len, n;
	int fd = -1, dfd = -1, r = 0;

	if (generation == 0 || !config_hash_valid(hash))
		return -EINVAL;
	settings_to_proto(s, &msg);
	len = tapio__v1__settings__get_packed_size(&msg);
	if (len > sizeof(packed))
		return -EINVAL;
	tapio__v1__settings__pack(&msg, packed);
	n = (size_t)snprintf(text, sizeof(text),
			     MAGIC "\ngeneration %" PRIu64 "\nhash %s\nsettings ", generation,
			     hash);
	for (size_t i = 0; i < len && n + 3 < sizeof(text); i++)
		n += (size_t)snprintf(text + n, sizeof(text) - n, "%02x", packed[i]);
	text[n++] = '\n';
	if ((size_t)snprintf(path, sizeof(path), "%s/" APPLIED_CONFIG_FILE, dir) >= sizeof(path) ||
	    (size_t)snprintf(tmp, sizeof(tmp), "%s/" APPLIED_CONFIG_FILE ".tmp", dir) >=
		sizeof(tmp))
		return -ENAMETOOLONG;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	r = write_all(fd, text, n);
	if (r == 0 && fsync(fd) < 0)
		r = -errno;
	if (close(fd) < 0 && r == 0)
		r = -errno;
	if (r == 0 && rename(tmp, path) < 0)
		r = -errno;
	if (r < 0) {
		unlink(tmp);
		return r;
	}
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		if (fsync(dfd) < 0)
			r = -errno;
		close(dfd);
	}
	return r;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

int applied_config_load(const char *dir, struct tapio_settings *s, uint64_t *generation,
			char hash[CONFIG_HASH_LEN])
{
	char path[PATH_MAX], text[MAX_FILE_BYTES + 1], h[CONFIG_HASH_LEN], check[CONFIG_HASH_LEN];
	char *line, *save = NULL, *hex = NULL;
	uint8_t packed[512];
	size_t n = 0, plen = 0;
	uint64_t gen = 0;
	Tapio__V1__Settings *msg;
	struct tapio_settings tmp;
	char err[160];
	int fd, r = 0, field = 0;

	if ((size_t)snprintf(path, sizeof(path), "%s/" APPLIED_CONFIG_FILE, dir) >= sizeof(path))
		return -ENAMETOOLONG;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	while (n < MAX_FILE_BYTES) {
		ssize_t got = read(fd, text + n, MAX_FILE_BYTES - n);

		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			r = -errno;
			break;
		}
		if (got == 0)
			break;
		n += (size_t)got;
	}
	close(fd);
	if (r < 0)
		return r;
	if (n >= MAX_FILE_BYTES)
		return -EINVAL;
	text[n] = '\0';
	h[0] = '\0';
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *end;

		if (field == 0 && strcmp(line, MAGIC) == 0) {
			field = 1;
		} else if (field == 1 && strncmp(line, "generation ", 11) == 0) {
			errno = 0;
			gen = strtoull(line + 11, &end, 10);
			if (errno || *end || gen == 0)
				return -EINVAL;
			field = 2;
		} else if (field == 2 && strncmp(line, "hash ", 5) == 0) {
			if (!config_hash_valid(line + 5))
				return -EINVAL;
			snprintf(h, sizeof(h), "%s", line + 5);
			field = 3;
		} else if (field == 3 && strncmp(line, "settings ", 9) == 0) {
			hex = line + 9;
			field = 4;
		} else {
			return -EINVAL;
		}
	}
	if (field != 4 || strlen(hex) % 2 || strlen(hex) / 2 > sizeof(packed))
		return -EINVAL;
	for (size_t i = 0; hex[2 * i]; i++) {
		int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return -EINVAL;
		packed[plen++] = (uint8_t)(hi << 4 | lo);
	}
	msg = tapio__v1__settings__unpack(NULL, plen, packed);
	if (!msg)
		return -EINVAL;
	r = settings_from_proto(msg, &tmp, err, sizeof(err));
	tapio__v1__settings__free_unpacked(msg, NULL);
	if (r < 0 || settings_validate(&tmp, err, sizeof(err)) < 0)
		return -EINVAL;
	if (config_hash_settings(&tmp, check) < 0 || strcmp(check, h) != 0)
		return -EINVAL;
	*s = tmp;
	*generation = gen;
	memcpy(hash, h, CONFIG_HASH_LEN);
	return 0;
}
