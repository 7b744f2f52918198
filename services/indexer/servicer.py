"""gRPC handlers for ``visualsearch.v1.Indexer``: parse, run the store off the event loop, reply."""

import asyncio

import grpc

from services.common.gen.visualsearch.v1 import indexer_pb2, indexer_pb2_grpc
from services.common.grpc_server import rpc
from services.indexer import convert, validation
from services.indexer.records import SearchParams
from services.indexer.store import CatalogStore


class IndexerServicer(indexer_pb2_grpc.IndexerServicer):
    def __init__(self, store: CatalogStore, max_k: int) -> None:
        self._store = store
        self._max_k = max_k

    @rpc
    async def Upsert(
        self, request: indexer_pb2.UpsertRequest, context: grpc.aio.ServicerContext
    ) -> indexer_pb2.UpsertResponse:
        product = convert.product_from_proto(request.product)
        keys, rows = convert.vectors_from_proto(request.vectors)
        record = await asyncio.to_thread(self._store.upsert, product, keys, rows, request.model_id)
        return indexer_pb2.UpsertResponse(product=convert.product_to_proto(record))

    @rpc
    async def Delete(
        self, request: indexer_pb2.DeleteRequest, context: grpc.aio.ServicerContext
    ) -> indexer_pb2.DeleteResponse:
        removed = await asyncio.to_thread(self._store.delete, request.product_id)
        return indexer_pb2.DeleteResponse(vectors_removed=removed)

    @rpc
    async def Get(
        self, request: indexer_pb2.GetRequest, context: grpc.aio.ServicerContext
    ) -> indexer_pb2.Product:
        record = await asyncio.to_thread(self._store.get, request.product_id)
        return convert.product_to_proto(record)

    @rpc
    async def List(
        self, request: indexer_pb2.ListRequest, context: grpc.aio.ServicerContext
    ) -> indexer_pb2.ListResponse:
        page, cursor = await asyncio.to_thread(
            self._store.list_page, request.category, request.limit, request.cursor
        )
        return indexer_pb2.ListResponse(
            products=[convert.product_to_proto(r) for r in page], next_cursor=cursor
        )

    @rpc
    async def Search(
        self, request: indexer_pb2.SearchRequest, context: grpc.aio.ServicerContext
    ) -> indexer_pb2.SearchResponse:
        params = self._params(request)
        validation.check_query_count(len(request.queries))  # before converting a huge request
        _, rows = convert.vectors_from_proto(request.queries)
        results = await asyncio.to_thread(self._store.search, rows, params, request.model_id)
        return indexer_pb2.SearchResponse(results=[convert.result_to_proto(r) for r in results])

    @rpc
    async def Similar(
        self, request: indexer_pb2.SimilarRequest, context: grpc.aio.ServicerContext
    ) -> indexer_pb2.SearchResult:
        params = self._params(request)
        matches = await asyncio.to_thread(self._store.similar, request.product_id, params)
        return convert.result_to_proto(matches)

    @rpc
    async def Stats(
        self, request: indexer_pb2.StatsRequest, context: grpc.aio.ServicerContext
    ) -> indexer_pb2.StatsResponse:
        return convert.stats_to_proto(await asyncio.to_thread(self._store.stats))

    def _params(self, request: indexer_pb2.SearchRequest | indexer_pb2.SimilarRequest) -> SearchParams:
        flt = convert.filter_from_proto(request.filter)
        return validation.search_params(request.k, request.offset, flt, request.min_similarity, self._max_k)
