/*
 * name_to_handle_at(2) / open_by_handle_at(2) for the tests (python3's os has
 * neither). Compiled at test time with cc (test/lib/fhandle.ts).
 *
 *   fhandle save PATH            prints "TYPE HEX": the handle of PATH (not followed if a symlink)
 *   fhandle open DIR TYPE HEX    opens the handle on the filesystem mounted at DIR, read-only, and
 *                                prints "file INO CONTENT" (its first 4 KiB) or "dir INO NAME..."
 *                                (sorted, without . and ..); on failure the errno's name, exit 1
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int fail(const char *what) {
  const char *name = strerrorname_np(errno);
  printf("%s\n", name != NULL ? name : "unknown errno");
  fprintf(stderr, "fhandle: %s: %s\n", what, strerror(errno));
  return 1;
}

static int save(const char *path) {
  struct file_handle *h = malloc(sizeof *h + MAX_HANDLE_SZ);
  int mount_id;
  h->handle_bytes = MAX_HANDLE_SZ;
  if (name_to_handle_at(AT_FDCWD, path, h, &mount_id, 0) != 0) return fail("name_to_handle_at");
  printf("%d ", h->handle_type);
  for (unsigned i = 0; i < h->handle_bytes; i++) printf("%02x", h->f_handle[i]);
  printf("\n");
  return 0;
}

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int open_handle(const char *dir, const char *type, const char *hex) {
  size_t len = strlen(hex) / 2;
  struct file_handle *h = malloc(sizeof *h + len);
  h->handle_bytes = (unsigned)len;
  h->handle_type = atoi(type);
  for (size_t i = 0; i < len; i++) sscanf(hex + 2 * i, "%2hhx", &h->f_handle[i]);
  int mfd = open(dir, O_RDONLY | O_DIRECTORY);
  if (mfd < 0) return fail("open mount");
  int fd = open_by_handle_at(mfd, h, O_RDONLY);
  if (fd < 0) return fail("open_by_handle_at");
  struct stat st;
  if (fstat(fd, &st) != 0) return fail("fstat");
  if (S_ISDIR(st.st_mode)) {
    DIR *d = fdopendir(fd);
    if (d == NULL) return fail("fdopendir");
    char *names[1024];
    size_t n = 0;
    struct dirent *e;
    errno = 0;
    while ((e = readdir(d)) != NULL && n < 1024) {
      if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) names[n++] = strdup(e->d_name);
    }
    if (errno != 0) return fail("readdir");
    qsort(names, n, sizeof names[0], by_name);
    printf("dir %llu", (unsigned long long)st.st_ino);
    for (size_t i = 0; i < n; i++) printf(" %s", names[i]);
    printf("\n");
    return 0;
  }
  char buf[4096];
  ssize_t got = read(fd, buf, sizeof buf);
  if (got < 0) return fail("read");
  printf("file %llu %.*s\n", (unsigned long long)st.st_ino, (int)got, buf);
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 3 && strcmp(argv[1], "save") == 0) return save(argv[2]);
  if (argc == 5 && strcmp(argv[1], "open") == 0) return open_handle(argv[2], argv[3], argv[4]);
  fprintf(stderr, "usage: fhandle save PATH | fhandle open MOUNTDIR TYPE HEX\n");
  return 2;
}
