/* main.c - the traind command line: dispatches to the commands.
 *
 * `serve` (the HTTP daemon, issue 4) is not built yet; it says so and exits
 * with status 2.
 */
#include <stdio.h>
#include <string.h>

#include "core/backend.h"
#include "server/cmd_run.h"
#include "core/tensor.h"

#define TRAIND_VERSION "0.1.0"

static void usage(FILE *out) {
    fprintf(out,
            "usage: traind <command> [options]\n"
            "\n"
            "commands:\n"
            "  version            print the version\n"
            "  info               dtypes, devices and backends of this build\n"
            "  run JOB.json [--jsonl] [--device cpu] [--out DIR]\n"
            "                     train one job in the foreground\n"
            "  serve              run the HTTP daemon (not yet built)\n");
}

static int cmd_info(void) {
    printf("traind %s\n", TRAIND_VERSION);
    printf("dtypes: float32 float64 int64 uint8\n");
    printf("backends: cpu (OpenBLAS)%s\n", backend_cuda_device_count() ? ", cuda" : "");
    printf("cuda devices: %d\n", backend_cuda_device_count());
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "version") == 0 || strcmp(argv[1], "--version") == 0) {
        printf("traind %s\n", TRAIND_VERSION);
        return 0;
    }
    if (strcmp(argv[1], "info") == 0) return cmd_info();
    if (strcmp(argv[1], "run") == 0) return cmd_run(argc - 2, argv + 2);
    if (strcmp(argv[1], "serve") == 0) {
        fprintf(stderr, "traind: '%s' is not built yet in this version\n", argv[1]);
        return 2;
    }
    fprintf(stderr, "traind: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
