# warden supervising Debian's Dovecot (conf/warden.toml: IMAP, POP3, LMTP,
# submission and ManageSieve with their helper services), as a container's
# PID 1. warden finds itself PID 1 and keeps a minimal init in front of
# the master, which reaps every process re-parented to it and passes
# SIGTERM (`docker stop`), SIGHUP (reload) and the others on.
#
#     docker build -t warden .
#     docker run -d --name mail -p 143:143 -p 110:110 warden
#     docker exec mail warden status
#     docker kill -s HUP mail        # reload the configuration
#
# Mount your own configuration over /etc/warden/warden.toml and your
# policy plugins at /etc/warden/plugins; the compiled plugins are cached
# in /var/cache/warden (a volume keeps them across containers).

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# rust-toolchain.toml names the toolchain and the wasm32-wasip2 target the
# built-in plugins are compiled for; rustup installs them on first use.
RUN cargo build --release --locked -p warden

FROM debian:bookworm-slim
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        dovecot-core dovecot-imapd dovecot-pop3d dovecot-lmtpd \
        dovecot-submissiond dovecot-managesieved \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/warden /usr/sbin/warden
COPY conf/warden.toml /etc/warden/warden.toml
RUN install -d -m 0755 /etc/warden/plugins \
    && install -d -m 0700 /var/cache/warden \
    && warden check -c /etc/warden/warden.toml
VOLUME /var/cache/warden
EXPOSE 110 143 587 4190
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/sbin/warden"]
CMD ["run", "-c", "/etc/warden/warden.toml"]
