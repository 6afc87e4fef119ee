async fn deposit(&self, id: u64, amount: u64) -> Result<u64, LockError> {
    let __lock_names: [::std::string::String; 1] = [::std::format!("account:{id}")];
    let __lock_client: ::core::option::Option<::lock_runtime::__private::LockClient> = ::core::option::Option::Some(
        ::lock_runtime::__private::client(&(self.locks)),
    );
    let __lock_options: ::lock_runtime::__private::LockOptions = ::lock_runtime::__private::options(
            ::lock_runtime::__private::Duration::from_millis(10000u64),
        )
        .wait(
            ::lock_runtime::__private::Wait::For(
                ::lock_runtime::__private::Duration::from_millis(2000u64),
            ),
        );
    ::lock_runtime::__private::run_async(
            __lock_client,
            &__lock_names,
            &__lock_options,
            ::lock_runtime::__private::LockedReturn::from_lock_error,
            move |_: ::lock_runtime::__private::LockHandle| async move {
                #[allow(
                    unreachable_code,
                    clippy::diverging_sub_expression,
                    clippy::empty_loop,
                    clippy::let_unit_value,
                    clippy::let_with_type_underscore,
                    clippy::needless_return,
                    clippy::unreachable
                )]
                if false {
                    let __lock_fake_return: Result<u64, LockError> = loop {};
                    return __lock_fake_return;
                }
                self.store.add(id, amount).await
            },
        )
        .await
}
