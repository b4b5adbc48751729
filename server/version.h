/* version.h - the version traind reports (`traind version`, GET /v1/health). */
#ifndef TRAIND_SERVER_VERSION_H
#define TRAIND_SERVER_VERSION_H

#define TRAIND_VERSION "0.1.0"

#endif
