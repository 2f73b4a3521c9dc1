# One image for every blueprint-faas service in docker-compose.yml: workers, beat, Flower,
# the reference FaaS server and the demo. The service's command picks the role.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies and the package first, so that adding an app module reuses this layer.
COPY pyproject.toml README.md ./
COPY dispatcher ./dispatcher
COPY workers ./workers
COPY providers ./providers
RUN pip install ".[all]"

# The demo app (dispatcher.demo) ships with the package. Your own app module goes beside it:
# build FROM this image and COPY it into /app, or mount it there.
ENV PYTHONPATH=/app

# Run unprivileged; /data is the reference server's volume and must be writable by it.
RUN useradd --create-home --uid 10001 blueprint \
    && mkdir -p /data \
    && chown blueprint:blueprint /data
USER blueprint

# 8080: reference FaaS server, 9808: worker metrics, 5555: Flower.
EXPOSE 8080 9808 5555

CMD ["blueprint-faas", "--help"]
