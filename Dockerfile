# The same environment as `make venv`, built by the same Makefile steps, running `birdemb`.
#   docker build -t birdemb .
#   docker run --rm -v $PWD/data:/data birdemb extract --model birdnet --audio /data/train_audio --store /data/store --dataset train
FROM python:3.11-slim

# make runs the install; ffmpeg is the decoder of last resort for formats libsndfile lacks (m4a, ...)
RUN apt-get update \
 && apt-get install -y --no-install-recommends make ffmpeg \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/birdemb
COPY Makefile pyproject.toml requirements.lock README.md ./
COPY birdemb ./birdemb
COPY jobs ./jobs
RUN make venv PYTHON=python3.11

ENV PATH=/opt/birdemb/.venv/bin:$PATH \
    BIRDEMB_CACHE=/cache
VOLUME ["/cache"]
ENTRYPOINT ["birdemb"]
CMD ["--help"]
