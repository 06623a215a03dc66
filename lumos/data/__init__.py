"""Data: the synthetic worlds (`worlds`), the web sources and their curation (`sources`,
`curate`, `decode`, `aesthetic_scores`, `captions`), and the splits and shards every stage reads
(`build`, `shards`, `subsets`, `buckets`, `export`, `videos`)."""
