/*
 * sd_notify(3)'s protocol without libsystemd: one datagram to the AF_UNIX socket systemd names in
 * $NOTIFY_SOCKET. Node has no datagram Unix sockets, and the message must come from the service's
 * own process: systemd attributes it by the sender's PID, which a helper (systemd-notify) that
 * exits at once may no longer have when systemd reads it.
 */
#include <errno.h>
#include <node_api.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_STATE 4096

/* notify(socketPath, state): 0, or the errno of the failure. */
static napi_value js_notify(napi_env env, napi_callback_info info)
{
	size_t argc = 2;
	napi_value argv[2], result;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path) + 1];
	char state[MAX_STATE];
	size_t plen = 0, slen = 0;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd, err = 0;
	socklen_t salen;

	if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 2 ||
	    napi_get_value_string_utf8(env, argv[0], path, sizeof(path), &plen) != napi_ok ||
	    napi_get_value_string_utf8(env, argv[1], state, sizeof(state), &slen) != napi_ok) {
		napi_throw_type_error(env, NULL, "notify(socketPath: string, state: string)");
		return NULL;
	}
	if (plen < 2 || plen >= sizeof(sa.sun_path) || (path[0] != '/' && path[0] != '@')) {
		err = EINVAL;
	} else {
		memcpy(sa.sun_path, path, plen);
		/* '@' names a socket in the abstract namespace: a leading NUL, not NUL-terminated. */
		if (path[0] == '@')
			sa.sun_path[0] = '\0';
		salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen + (path[0] == '/'));
		fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			err = errno;
		else {
			if (sendto(fd, state, slen, MSG_NOSIGNAL, (struct sockaddr *)&sa, salen) < 0)
				err = errno;
			close(fd);
		}
	}
	napi_create_int32(env, err, &result);
	return result;
}

static napi_value init(napi_env env, napi_value exports)
{
	const napi_property_descriptor fns[] = {
		{ "notify", NULL, js_notify, NULL, NULL, NULL, napi_enumerable, NULL },
	};
	napi_define_properties(env, exports, sizeof(fns) / sizeof(fns[0]), fns);
	return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
