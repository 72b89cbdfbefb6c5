// The pod's writable disk (see launcher_internal.h): a sparse raw file
// formatted ext4, on which the guest keeps each container's upper
// directory and the pod's emptyDir volumes. Raw, so QEMU and Firecracker
// both take it; sparse, so it costs only what the pod writes. No journal:
// the disk lives exactly as long as its VM.
#include "launcher_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

int scratch_disk_make(const char *path, int64_t bytes, vmlet_err_t *err)
{
    struct stat st;
    if (stat(path, &st) == 0 && st.st_size == bytes)
        return 0;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return vmlet_err_errno(err, errno, "scratch disk %s", path);
    int rc = ftruncate(fd, bytes);
    int saved = errno;
    close(fd);
    if (rc < 0)
        return vmlet_err_errno(err, saved, "scratch disk %s: sizing to %lld bytes", path,
                               (long long)bytes);
    char *argv[] = {"mkfs.ext4", "-q", "-F", "-m", "0", "-O", "^has_journal",
                    "-E", "lazy_itable_init=1", (char *)path, NULL};
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
    pid_t pid;
    rc = posix_spawnp(&pid, "mkfs.ext4", &actions, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0)
        return vmlet_err_errno(err, rc, "scratch disk %s: running mkfs.ext4 (install e2fsprogs)",
                               path);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        unlink(path);
        return vmlet_err_set(err, "scratch disk %s: mkfs.ext4 failed (status %d)", path, status);
    }
    return 0;
}
