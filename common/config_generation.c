/*
 * Persistent config generation. The file is three short text lines so an operator can read
 * it:
 *   tapio-config-generation 1
 *   generation 42
 *   hash sha256:…
 * It is replaced whole (tmp + fsync + rename + directory fsync), so a reader sees the old or
 * the new content, never a mix; a .tmp left by a crash is overwritten by the next save.
 */
#include "config_generation.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define HEADER "tapio-config-generation 1\n"

static int path_of(char *buf, size_t len, const char *dir, const char *suffix)
{
	int n = snprintf(buf, len, "%s/%s%s", dir, CONFIG_GENERATION_FILE, suffix);

	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

static int parse(const char *text, struct config_generation_store *out)
{
	const char *p = text;
	char *end;
	size_t hl;

	if (strncmp(p, HEADER, strlen(HEADER)) != 0)
		return -EINVAL;
	p += strlen(HEADER);
	if (strncmp(p, "generation ", 11) != 0)
		return -EINVAL;
	p += 11;
	if (*p < '0' || *p > '9')
		return -EINVAL;
	errno = 0;
	out->generation = strtoull(p, &end, 10);
	if (errno || *end != '\n')
		return -EINVAL;
	p = end + 1;
	if (strncmp(p, "hash ", 5) != 0)
		return -EINVAL;
	p += 5;
	end = strchr(p, '\n');
	if (!end || end[1] != 0)
		return -EINVAL;
	hl = (size_t)(end - p);
	if (hl >= CONFIG_HASH_LEN)
		return -EINVAL;
	memcpy(out->hash, p, hl);
	out->hash[hl] = 0;
	if (hl && !config_hash_valid(out->hash))
		return -EINVAL;
	return 0;
}

int config_generation_load(const char *dir, struct config_generation_store *out)
{
	char path[4096], text[256];
	size_t len = 0;
	ssize_t n;
	int fd, rc;

	memset(out, 0, sizeof(*out));
	if ((rc = path_of(path, sizeof(path), dir, "")) < 0)
		return rc;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	while ((n = read(fd, text + len, sizeof(text) - 1 - len)) > 0)
		len += (size_t)n;
	rc = n < 0 ? -errno : 0;
	close(fd);
	if (rc < 0)
		return rc;
	if (len == sizeof(text) - 1)
		return -EINVAL;
	text[len] = 0;
	if (strlen(text) != len)
		return -EINVAL;
	rc = parse(text, out);
	if (rc < 0)
		memset(out, 0, sizeof(*out));
	return rc;
}

static int write_all(int fd, const char *buf, size_t len)
{
	while (len) {
		ssize_t n = write(fd, buf, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

int config_generation_save(const char *dir, const struct config_generation_store *st)
{
	char path[4096], tmp[4096], text[256];
	int fd = -1, dfd = -1, rc, n;

	if (st->hash[0] && !config_hash_valid(st->hash))
		return -EINVAL;
	if ((rc = path_of(path, sizeof(path), dir, "")) < 0 ||
	    (rc = path_of(tmp, sizeof(tmp), dir, ".tmp")) < 0)
		return rc;
	n = snprintf(text, sizeof(text), HEADER "generation %" PRIu64 "\nhash %s\n", st->generation,
		     st->hash);
	if (n < 0 || (size_t)n >= sizeof(text))
		return -EINVAL;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	if ((rc = write_all(fd, text, (size_t)n)) < 0)
		goto out;
	if (fsync(fd) < 0) {
		rc = -errno;
		goto out;
	}
	if (close(fd) < 0) {
		fd = -1;
		rc = -errno;
		goto out;
	}
	fd = -1;
	if (rename(tmp, path) < 0) {
		rc = -errno;
		goto out;
	}
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0 || fsync(dfd) < 0)
		rc = -errno;
out:
	if (dfd >= 0)
		close(dfd);
	if (fd >= 0)
		close(fd);
	if (rc < 0)
		unlink(tmp); /* ENOENT once renamed: harmless */
	return rc;
}

int config_generation_bump(const char *dir, uint64_t *gen)
{
	struct config_generation_store st;
	int rc = config_generation_load(dir, &st);

	if (rc < 0)
		return rc;
	if (st.generation == UINT64_MAX)
		return -EOVERFLOW;
	st.generation++;
	if ((rc = config_generation_save(dir, &st)) < 0)
		return rc;
	*gen = st.generation;
	return 0;
}

int config_generation_next(const char *dir, const char *content_hash, uint64_t *gen)
{
	struct config_generation_store st;
	int rc;

	if (!config_hash_valid(content_hash))
		return -EINVAL;
	if ((rc = config_generation_load(dir, &st)) < 0)
		return rc;
	if (st.generation > 0 && strcmp(st.hash, content_hash) == 0) {
		*gen = st.generation;
		return 0;
	}
	if (st.generation == UINT64_MAX)
		return -EOVERFLOW;
	st.generation++;
	memcpy(st.hash, content_hash, CONFIG_HASH_LEN);
	if ((rc = config_generation_save(dir, &st)) < 0)
		return rc;
	*gen = st.generation;
	return 1;
}
