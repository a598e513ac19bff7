# pooldrop server image. Build: docker build -t pooldrop .
# Embedded default: docker run -p 8000:8000 -v pooldrop-data:/data pooldrop
# Production: set POOLDROP_DATABASE_URL, POOLDROP_STORAGE_URL, POOLDROP_BUS_URL (see docs/deploy.md).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home /data pooldrop \
 && mkdir -p /data && chown pooldrop /data
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER pooldrop
ENV POOLDROP_DATA_DIR=/data \
    POOLDROP_HOST=0.0.0.0 \
    POOLDROP_PORT=8000 \
    PYTHONUNBUFFERED=1
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s \
  CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz').status != 200)"
ENTRYPOINT ["pooldrop"]
CMD ["serve"]
